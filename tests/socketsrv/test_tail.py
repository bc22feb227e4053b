"""Subscribes to a channel live on the worker, answered from the stream it holds
(socketsrv/tail.py): the same answer a history read gives, without the read, and a read
whenever the worker cannot vouch for the answer.

The bus is the real in-process bus, counting the history reads that reach it; subscribers
are recording fakes (the hub needs push and close_with).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from herald_contract.bus import BusUnavailable, HistoryRead, HistoryResult
from herald_contract.envelope import StreamPosition, pack_data
from herald_contract.history import Retention
from herald_contract.memory_bus import MemoryBus
from socketsrv.channel import Channel
from socketsrv.hub import ChannelState, Hub
from socketsrv.metrics import build_metrics
from socketsrv.protocol.session import Recovery
from socketsrv.publication import Publication
from socketsrv.tail import TAIL_CHANNEL_BYTES, TAIL_PUBLICATIONS, TAIL_WINDOW_S, Tails
from tests.support.subscribers import RecordingSubscriber
from tests.support.waiting import eventually

CHANNEL = "question:1"


class CountingBus(MemoryBus):
    """The in-process bus, counting the channels its history reads were asked for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads: list[str] = []

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        self.reads += [r.channel for r in reads]
        return await super().history_many(reads)


class WallClock:
    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_s


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
async def bus() -> AsyncIterator[CountingBus]:
    b = CountingBus(history_size=50, kind_retention={"user": Retention(5, 60.0)})
    yield b
    await b.close()


@pytest.fixture
async def hub(bus: CountingBus, registry: CollectorRegistry, wall: WallClock) -> AsyncIterator[Hub]:
    h = Hub(
        bus,
        metrics=build_metrics(registry),
        history_limit=50,
        unsubscribe_grace_s=60.0,
        retention=lambda channel: (5, 60.0) if channel.startswith("user:") else (50, 900.0),
        wall_clock=wall,
    )
    await bus.start(h)
    yield h
    await h.close()


async def publish(bus: MemoryBus, channel: str, count: int, pad: int = 0) -> None:
    for i in range(count):
        await bus.publish(channel, pack_data({"i": i, "pad": "x" * pad}))


@dataclass
class Live:
    """A channel live on the worker: its state, its epoch, and the subscriber keeping it."""

    ch: Channel
    epoch: str
    watcher: RecordingSubscriber


async def live_channel(hub: Hub, bus: CountingBus, channel: str, published: int) -> Live:
    """*channel* kept live on the worker by a subscriber, *published* publications in."""
    watcher = RecordingSubscriber()
    await hub.subscribe(watcher, channel, None, watcher.on_subscribed)
    await publish(bus, channel, published)
    await eventually(lambda: len(watcher.frames) == published)
    bus.reads.clear()
    ch = _channel(hub, channel)
    assert ch.epoch is not None
    return Live(ch, ch.epoch, watcher)


async def reconnect(hub: Hub, channel: str, since: StreamPosition | None) -> RecordingSubscriber:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, channel, since, sub.on_subscribed)
    return sub


def reads_from(registry: CollectorRegistry, source: str) -> float:
    value = registry.get_sample_value("herald_subscribe_reads_total", {"source": source})
    return value or 0.0


# Answered by the worker


async def test_a_reconnect_to_a_live_channel_gets_what_it_missed_without_a_history_read(
    hub: Hub, bus: CountingBus, registry: CollectorRegistry
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 6)
    assert hub.channel_state(CHANNEL) is ChannelState.LIVE
    sub = await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 3))
    assert sub.replies == [(StreamPosition(live.epoch, 6), Recovery.RECOVERED)]
    assert sub.offsets == [4, 5, 6]
    assert bus.reads == []
    assert reads_from(registry, "worker") == 1


async def test_its_frames_are_the_very_bytes_the_live_subscribers_got(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 4)
    sub = await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 1))
    assert sub.frames == live.watcher.frames[1:]
    assert all(a is b for a, b in zip(sub.frames, live.watcher.frames[1:], strict=True))


async def test_a_fresh_subscribe_to_a_live_channel_gets_its_position_without_a_read(
    hub: Hub, bus: CountingBus
) -> None:
    await live_channel(hub, bus, CHANNEL, 3)
    sub = await reconnect(hub, CHANNEL, None)
    ((position, recovery),) = sub.replies
    assert (position.offset, recovery, sub.frames) == (3, Recovery.NONE, [])
    assert bus.reads == []


async def test_publications_after_the_answer_arrive_live_in_order(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 5)
    sub = await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 2))
    await publish(bus, CHANNEL, 3)
    await eventually(lambda: len(sub.offsets) == 6)
    assert sub.offsets == [3, 4, 5, 6, 7, 8]


async def test_a_read_that_reaches_the_channels_position_is_kept_for_later_reconnects(
    hub: Hub, bus: CountingBus
) -> None:
    # After a restart the worker holds nothing: the first reconnect reads the history, and
    # what it read (up to the position) answers the next ones.
    await publish(bus, CHANNEL, 4)
    first = await reconnect(hub, CHANNEL, StreamPosition("-", 0))
    epoch = first.replies[0][0].epoch
    assert first.offsets == [1, 2, 3, 4]
    assert bus.reads == [CHANNEL]
    later = await reconnect(hub, CHANNEL, StreamPosition(epoch, 2))
    assert later.offsets == [3, 4]
    assert later.replies == [(StreamPosition(epoch, 4), Recovery.RECOVERED)]
    assert bus.reads == [CHANNEL]


async def test_a_subscribe_the_worker_can_answer_is_done_before_the_call_returns(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 3)
    sub = RecordingSubscriber()
    assert hub.subscribe_at_once(sub, CHANNEL, StreamPosition(live.epoch, 1), sub.on_subscribed)
    assert sub.replies == [(StreamPosition(live.epoch, 3), Recovery.RECOVERED)]
    assert sub.offsets == [2, 3]
    assert hub.subscriber_count(CHANNEL) == 2


async def test_one_it_cannot_answer_is_left_undone_for_the_awaited_subscribe(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, TAIL_PUBLICATIONS + 2)
    sub = RecordingSubscriber()
    assert not hub.subscribe_at_once(sub, CHANNEL, StreamPosition(live.epoch, 0), sub.on_subscribed)
    assert not hub.subscribe_at_once(sub, "question:2", None, sub.on_subscribed)  # not held
    assert (sub.replies, sub.frames, hub.subscriber_count(CHANNEL)) == ([], [], 1)
    assert hub.channel_state("question:2") is None


# Read from the bus: what the worker cannot vouch for


async def test_a_position_older_than_what_the_worker_keeps_is_read_from_the_bus(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, TAIL_PUBLICATIONS + 4)
    sub = await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 2))
    assert sub.offsets == list(range(3, TAIL_PUBLICATIONS + 5))
    assert sub.replies[0][1] is Recovery.RECOVERED
    assert bus.reads == [CHANNEL]


async def test_a_replay_the_history_size_would_not_cover_is_not_recovered_from_the_tail(
    hub: Hub, bus: CountingBus
) -> None:
    # user:* keeps 5 publications; 7 were missed.
    live = await live_channel(hub, bus, "user:7", 8)
    assert _kept(live.ch) == 8
    sub = await reconnect(hub, "user:7", StreamPosition(live.epoch, 1))
    assert sub.replies[0][1] is Recovery.FAILED
    assert sub.frames == []
    assert bus.reads == ["user:7"]


async def test_publications_older_than_the_history_ttl_are_read_from_the_bus(
    hub: Hub, bus: CountingBus, wall: WallClock
) -> None:
    live = await live_channel(hub, bus, "user:8", 3)
    wall.ahead_s = 61.0  # user:* keeps its history 60 s; the tail is not pruned yet
    await reconnect(hub, "user:8", StreamPosition(live.epoch, 1))
    assert bus.reads == ["user:8"]


async def test_the_sweep_drops_what_was_published_longer_ago_than_the_window(
    hub: Hub, bus: CountingBus, wall: WallClock
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 3)
    assert _kept(live.ch) == 3
    hub.expire_idle()
    assert _kept(live.ch) == 3
    wall.ahead_s = TAIL_WINDOW_S + 1
    hub.expire_idle()
    assert _kept(live.ch) == 0
    sub = await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 1))
    assert sub.offsets == [2, 3]
    assert bus.reads == [CHANNEL]


async def test_a_publication_too_big_to_keep_sends_the_next_reconnect_to_the_bus(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 2)
    await publish(bus, CHANNEL, 1, pad=TAIL_CHANNEL_BYTES)
    await eventually(lambda: len(live.watcher.frames) == 3)
    assert _kept(live.ch) == 0
    sub = await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 2))
    assert sub.offsets == [3]
    assert bus.reads == [CHANNEL]


async def test_a_position_from_another_epoch_is_read_from_the_bus(
    hub: Hub, bus: CountingBus
) -> None:
    await live_channel(hub, bus, CHANNEL, 2)
    sub = await reconnect(hub, CHANNEL, StreamPosition("another-epoch", 1))
    assert sub.replies[0][1] is Recovery.FAILED
    assert bus.reads == [CHANNEL]


async def test_a_channel_with_nothing_published_is_read_from_the_bus(
    hub: Hub, bus: CountingBus
) -> None:
    watcher = RecordingSubscriber()
    await hub.subscribe(watcher, CHANNEL, None, watcher.on_subscribed)
    await reconnect(hub, CHANNEL, None)
    assert bus.reads == [CHANNEL, CHANNEL]


async def test_nothing_is_answered_by_the_worker_while_the_bus_is_down(
    hub: Hub, bus: CountingBus
) -> None:
    live = await live_channel(hub, bus, CHANNEL, 2)
    await bus.close()
    with pytest.raises(BusUnavailable):
        await reconnect(hub, CHANNEL, StreamPosition(live.epoch, 1))


# The tail itself


def _pub(offset: int, epoch: str = "e1", size: int = 10, at_ms: int = 0) -> Publication:
    return Publication(CHANNEL, epoch, offset, at_ms, {"o": offset}, size=size)


def _channel(hub: Hub, name: str) -> Channel:
    ch = next((c for c in hub.channels() if c.name == name), None)
    assert ch is not None
    return ch


def _kept(ch: Channel) -> int:
    return len(ch.tail or [])


def _bare_channel() -> Channel:
    ch = Channel.__new__(Channel)
    ch.tail, ch.tail_bytes = None, 0
    ch.name = CHANNEL
    return ch


def test_a_tail_keeps_the_last_publications_up_to_its_bound() -> None:
    tails, ch = Tails(lambda _: (500, 900.0)), _bare_channel()
    for offset in range(1, TAIL_PUBLICATIONS + 6):
        tails.remember(ch, _pub(offset))
    assert ch.tail is not None
    assert [p.offset for p in ch.tail] == list(range(6, TAIL_PUBLICATIONS + 6))


def test_a_tail_keeps_no_more_bytes_than_its_bound() -> None:
    tails, ch = Tails(lambda _: (500, 900.0)), _bare_channel()
    for offset in range(1, 6):
        tails.remember(ch, _pub(offset, size=TAIL_CHANNEL_BYTES // 3))
    assert ch.tail is not None
    assert [p.offset for p in ch.tail] == [3, 4, 5]


def test_a_publication_that_does_not_follow_the_tail_starts_it_afresh() -> None:
    tails, ch = Tails(lambda _: (500, 900.0)), _bare_channel()
    for offset in (1, 2, 3):
        tails.remember(ch, _pub(offset))
    tails.remember(ch, _pub(1, epoch="e2"))
    assert ch.tail is not None
    assert [(p.epoch, p.offset) for p in ch.tail] == [("e2", 1)]
