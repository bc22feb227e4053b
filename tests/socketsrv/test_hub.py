"""The hub: reference counting, fan-out, gap-free subscribe and stream repair.

Subscribers here are recording fakes (the hub only needs push and close_with); the bus is the
real in-process bus, wrapped where a test needs to lose live publications on the way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from herald_contract.bus import (
    BusListener,
    BusUnavailable,
    HistoryRead,
    HistoryResult,
    PublishResult,
)
from herald_contract.envelope import StreamPosition, pack_data
from herald_contract.memory_bus import MemoryBus
from socketsrv.hub import ChannelState, Hub
from socketsrv.metrics import build_metrics
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import Recovery
from tests.support.subscribers import RecordingSubscriber
from tests.support.waiting import eventually


class LossyBus:
    """The in-process bus, except that live publications with chosen offsets never arrive."""

    def __init__(self, inner: MemoryBus) -> None:
        self.inner = inner
        self.drop: set[int] = set()
        self.listener: BusListener | None = None
        self.unsubscribed: list[str] = []
        self.refuse_subscribes = 0
        """How many of the next subscribes fail as if Redis were down."""
        self.refuse_histories = 0
        """How many of the next history reads fail, the bus staying live (one shard moving)."""
        self.hold_histories: asyncio.Future[None] | None = None
        """When set, history reads are answered (read now) only once it is done: a reply
        slower than the pub/sub connection."""
        self.held = 0

    @property
    def live(self) -> bool:
        return self.inner.live

    async def start(self, listener: BusListener) -> None:
        self.listener = listener
        await self.inner.start(self)

    async def close(self) -> None:
        await self.inner.close()

    async def subscribe(self, channel: str) -> None:
        if self.refuse_subscribes:
            self.refuse_subscribes -= 1
            raise BusUnavailable("Redis is down")
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.unsubscribed.append(channel)
        await self.inner.unsubscribe(channel)

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        return await self.inner.publish(channel, packed_data, event_id=event_id)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        return await self.inner.history(channel, since, limit)

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        if self.refuse_histories:
            self.refuse_histories -= 1
            raise BusUnavailable("the shard's primary moved")
        results = await self.inner.history_many(reads)
        if self.hold_histories is not None:
            self.held += 1
            await self.hold_histories
        return results

    async def positions(self, channels: Sequence[str]) -> list[StreamPosition]:
        return await self.inner.positions(channels)

    def on_publication(self, channel: str, envelope: bytes) -> None:
        from herald_contract.envelope import decode_envelope

        if decode_envelope(envelope).offset in self.drop:
            return
        assert self.listener is not None
        self.listener.on_publication(channel, envelope)

    def on_bus_lost(self) -> None:
        assert self.listener is not None
        self.listener.on_bus_lost()

    def on_bus_restored(self) -> None:
        assert self.listener is not None
        self.listener.on_bus_restored()


@pytest.fixture
async def bus() -> AsyncIterator[LossyBus]:
    lossy = LossyBus(MemoryBus(history_size=50))
    yield lossy
    await lossy.close()


@pytest.fixture
async def hub(bus: LossyBus) -> AsyncIterator[Hub]:
    h = Hub(bus, metrics=build_metrics(), history_limit=50, unsubscribe_grace_s=0.0)
    await bus.start(h)
    yield h
    await h.close()


async def publish(bus: LossyBus, channel: str, count: int, **data: Any) -> None:
    for i in range(count):
        await bus.publish(channel, pack_data({"i": i, **data}))


async def until_offsets(sub: RecordingSubscriber, offsets: list[int]) -> None:
    """Wait until *sub* received exactly *offsets* (fail if it gets others or too few)."""
    await eventually(lambda: len(sub.offsets) >= len(offsets))
    assert sub.offsets == offsets


async def until_closed(sub: RecordingSubscriber) -> CloseCode:
    await eventually(lambda: sub.closed_with is not None)
    assert sub.closed_with is not None
    return sub.closed_with


async def test_every_subscriber_receives_each_publication_once_in_order(
    hub: Hub, bus: LossyBus
) -> None:
    subs = [RecordingSubscriber() for _ in range(3)]
    for sub in subs:
        await hub.subscribe(sub, "question:1", None, sub.on_subscribed)
    await publish(bus, "question:1", 10)
    for sub in subs:
        await until_offsets(sub, list(range(1, 11)))


async def test_a_publication_is_encoded_once_per_wire_format(hub: Hub, bus: LossyBus) -> None:
    json_subs = [RecordingSubscriber(WireFormat.JSON) for _ in range(2)]
    msgpack_subs = [RecordingSubscriber(WireFormat.MSGPACK) for _ in range(2)]
    for sub in json_subs + msgpack_subs:
        await hub.subscribe(sub, "tag:python", None, sub.on_subscribed)
    await publish(bus, "tag:python", 1)
    for sub in json_subs + msgpack_subs:
        await until_offsets(sub, [1])
    assert json_subs[0].frames[0] is json_subs[1].frames[0]
    assert msgpack_subs[0].frames[0] is msgpack_subs[1].frames[0]
    assert json_subs[0].frames[0] != msgpack_subs[0].frames[0]


async def test_a_fresh_subscribe_reports_the_current_position_without_recovery(
    hub: Hub, bus: LossyBus
) -> None:
    await publish(bus, "question:2", 3)
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:2", None, sub.on_subscribed)
    ((position, recovery),) = sub.replies
    assert (position.offset, recovery) == (3, Recovery.NONE)
    assert sub.frames == []


async def test_a_subscribe_with_a_position_replays_exactly_what_was_missed(
    hub: Hub, bus: LossyBus
) -> None:
    first = (await bus.publish("question:3", pack_data(0))).position
    await publish(bus, "question:3", 4)
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:3", first, sub.on_subscribed)
    assert sub.replies[0][1] is Recovery.RECOVERED
    assert sub.offsets == [2, 3, 4, 5]


async def test_publications_during_the_history_read_are_neither_lost_nor_repeated(
    hub: Hub, bus: LossyBus
) -> None:
    start = (await bus.publish("question:4", pack_data(0))).position

    async def keep_publishing() -> None:
        for i in range(40):
            await bus.publish("question:4", pack_data(i))
            await asyncio.sleep(0)

    publisher = asyncio.ensure_future(keep_publishing())
    subs = []
    for _ in range(10):
        sub = RecordingSubscriber()
        await hub.subscribe(sub, "question:4", start, sub.on_subscribed)
        subs.append(sub)
        await asyncio.sleep(0)
    await publisher
    for sub in subs:
        await until_offsets(sub, list(range(2, 42)))


async def test_a_lost_live_publication_is_repaired_from_history(hub: Hub, bus: LossyBus) -> None:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:5", None, sub.on_subscribed)
    bus.drop = {3, 4}
    await publish(bus, "question:5", 8)
    await until_offsets(sub, list(range(1, 9)))
    assert hub.channel_state("question:5") is ChannelState.LIVE


async def test_a_bus_reconnect_repairs_every_channel_with_subscribers(
    hub: Hub, bus: LossyBus
) -> None:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:6", None, sub.on_subscribed)
    await publish(bus, "question:6", 2)
    await until_offsets(sub, [1, 2])
    bus.drop = {3, 4, 5}
    await publish(bus, "question:6", 3)  # lost on the way, as in a bus outage
    hub.on_bus_restored()
    await until_offsets(sub, [1, 2, 3, 4, 5])


async def test_a_repair_whose_history_read_fails_while_the_bus_is_live_tries_again(
    hub: Hub, bus: LossyBus
) -> None:
    # As when a cluster shard's primary has just changed: the bus is live again, but the
    # command client still looks for the slot at the dead node. Nothing else will restart it.
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:8", None, sub.on_subscribed)
    await publish(bus, "question:8", 2)
    await until_offsets(sub, [1, 2])
    bus.drop = {3, 4}
    bus.refuse_histories = 2
    await publish(bus, "question:8", 3)  # offset 5 shows the gap; its repair read fails twice
    await until_offsets(sub, [1, 2, 3, 4, 5])
    assert bus.refuse_histories == 0
    assert hub.channel_state("question:8") is ChannelState.LIVE


async def test_a_lost_history_closes_the_channel_subscribers_with_state_lost(
    hub: Hub, bus: LossyBus
) -> None:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:7", None, sub.on_subscribed)
    await publish(bus, "question:7", 2)
    await until_offsets(sub, [1, 2])
    bus.inner.forget_history()
    await publish(bus, "question:7", 1)
    assert await until_closed(sub) is CloseCode.STATE_LOST


async def test_a_gap_beyond_the_history_window_closes_subscribers_with_state_lost(
    hub: Hub, bus: LossyBus
) -> None:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:8", None, sub.on_subscribed)
    bus.drop = set(range(1, 60))
    await publish(bus, "question:8", 60)
    assert await until_closed(sub) is CloseCode.STATE_LOST


NOTHING = StreamPosition("-", 0)


async def test_subscribers_told_nothing_was_published_get_the_first_epoch_from_offset_1(
    hub: Hub, bus: LossyBus
) -> None:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:20", None, sub.on_subscribed)
    assert sub.replies == [(NOTHING, Recovery.NONE)]
    bus.drop = {1}  # the first live publication is lost: repaired from the new epoch's start
    await publish(bus, "question:20", 3)
    await until_offsets(sub, [1, 2, 3])
    assert sub.closed_with is None


async def test_a_subscriber_reading_the_new_epoch_before_its_publications_arrive_is_not_closed(
    hub: Hub, bus: LossyBus
) -> None:
    first = RecordingSubscriber()
    await hub.subscribe(first, "question:21", None, first.on_subscribed)
    bus.drop = {1, 2}  # in flight, as far as the hub knows
    await publish(bus, "question:21", 2)
    second = RecordingSubscriber()
    await hub.subscribe(second, "question:21", NOTHING, second.on_subscribed)
    assert second.replies[0][1] is Recovery.RECOVERED
    assert second.offsets == [1, 2]
    bus.drop = set()
    await publish(bus, "question:21", 1)  # offset 3 shows the gap; the repair fills 1 and 2
    await until_offsets(first, [1, 2, 3])
    await until_offsets(second, [1, 2, 3])
    assert (first.closed_with, second.closed_with) == (None, None)


@pytest.mark.parametrize("earlier_subscriber", [False, True])
async def test_a_read_answered_before_the_first_publication_is_not_a_change_of_epoch(
    hub: Hub, bus: LossyBus, earlier_subscriber: bool
) -> None:
    """The read says nothing was published; the first publications overtake its reply on
    the pub/sub connection. They are the stream from offset 1, not a new epoch: closing
    everyone with 4003 here hit the prober's connections at start-up."""
    first = RecordingSubscriber()
    if earlier_subscriber:
        await hub.subscribe(first, "question:23", None, first.on_subscribed)
    bus.hold_histories = asyncio.get_running_loop().create_future()
    second = RecordingSubscriber()
    subscribing = asyncio.ensure_future(
        hub.subscribe(second, "question:23", None, second.on_subscribed)
    )
    await eventually(lambda: bus.held == 1)  # read at "Redis": nothing published yet
    await publish(bus, "question:23", 2)
    if earlier_subscriber:
        await until_offsets(first, [1, 2])
    bus.hold_histories.set_result(None)
    await subscribing
    await until_offsets(second, [1, 2])
    await publish(bus, "question:23", 1)
    await until_offsets(second, [1, 2, 3])
    assert (first.closed_with, second.closed_with) == (None, None)


async def test_a_subscriber_from_an_older_epoch_overtaken_by_the_first_publications_is_failed(
    hub: Hub, bus: LossyBus
) -> None:
    """The same race after the history was lost: the subscriber's position is in the old
    epoch, so however the new epoch's publications reach it, its recovery failed, and it
    gets the new epoch from offset 1."""
    bus.hold_histories = asyncio.get_running_loop().create_future()
    sub = RecordingSubscriber()
    old = StreamPosition("an-old-epoch", 7)
    subscribing = asyncio.ensure_future(hub.subscribe(sub, "question:24", old, sub.on_subscribed))
    await eventually(lambda: bus.held == 1)
    await publish(bus, "question:24", 2)
    bus.hold_histories.set_result(None)
    await subscribing
    assert [recovery for _, recovery in sub.replies] == [Recovery.FAILED]
    await until_offsets(sub, [1, 2])
    assert sub.closed_with is None


async def test_a_bus_reconnect_repairs_a_channel_whose_first_publications_were_lost(
    hub: Hub, bus: LossyBus
) -> None:
    sub = RecordingSubscriber()
    await hub.subscribe(sub, "question:22", None, sub.on_subscribed)
    bus.drop = {1, 2}
    await publish(bus, "question:22", 2)  # lost on the way, as in a bus outage
    hub.on_bus_restored()
    await until_offsets(sub, [1, 2])


async def test_the_last_subscriber_leaving_unsubscribes_the_bus_after_the_grace_period(
    bus: LossyBus,
) -> None:
    now = [100.0]
    hub = Hub(
        bus,
        metrics=build_metrics(),
        history_limit=50,
        unsubscribe_grace_s=5.0,
        clock=lambda: now[0],
    )
    await bus.start(hub)
    try:
        a, b = RecordingSubscriber(), RecordingSubscriber()
        await hub.subscribe(a, "questions:new", None, a.on_subscribed)
        await hub.subscribe(b, "questions:new", None, b.on_subscribed)
        hub.unsubscribe(a, "questions:new")
        now[0] += 60.0
        hub.expire_idle()
        assert hub.channel_state("questions:new") is ChannelState.LIVE  # b is still there
        hub.unsubscribe(b, "questions:new")
        now[0] += 4.9
        hub.expire_idle()
        assert hub.channel_state("questions:new") is ChannelState.LIVE  # within the grace
        now[0] += 0.1
        hub.expire_idle()
        assert hub.channel_state("questions:new") is None
        await eventually(lambda: bus.unsubscribed == ["questions:new"])
    finally:
        await hub.close()


async def test_unsubscribed_subscribers_receive_nothing_more(hub: Hub, bus: LossyBus) -> None:
    stays, leaves = RecordingSubscriber(), RecordingSubscriber()
    for sub in (stays, leaves):
        await hub.subscribe(sub, "question:9", None, sub.on_subscribed)
    await publish(bus, "question:9", 1)
    await until_offsets(leaves, [1])
    hub.remove(leaves, {"question:9"})
    await publish(bus, "question:9", 1)
    await until_offsets(stays, [1, 2])  # the fan-out that would have reached both is done
    assert leaves.offsets == [1]


async def test_a_subscriber_removed_during_its_history_read_gets_nothing(
    hub: Hub, bus: LossyBus
) -> None:
    sub, witness = RecordingSubscriber(), RecordingSubscriber()
    task = asyncio.ensure_future(hub.subscribe(sub, "question:10", None, sub.on_subscribed))
    await asyncio.sleep(0)  # the subscribe is under way
    hub.remove(sub, {"question:10"})
    await task
    await hub.subscribe(witness, "question:10", None, witness.on_subscribed)
    await publish(bus, "question:10", 2)
    await until_offsets(witness, [1, 2])
    assert sub.frames == []
    assert hub.subscriber_count("question:10") == 1  # the witness only


async def test_a_failed_bus_subscription_fails_its_subscribers_and_the_next_subscribe_retries(
    hub: Hub, bus: LossyBus
) -> None:
    bus.refuse_subscribes = 1
    first, second, later = RecordingSubscriber(), RecordingSubscriber(), RecordingSubscriber()
    results = await asyncio.gather(
        hub.subscribe(first, "question:11", None, first.on_subscribed),
        hub.subscribe(second, "question:11", None, second.on_subscribed),
        return_exceptions=True,
    )
    assert all(isinstance(r, BusUnavailable) for r in results), results
    assert hub.channel_state("question:11") is None

    await hub.subscribe(later, "question:11", None, later.on_subscribed)
    await publish(bus, "question:11", 1)
    await until_offsets(later, [1])
    assert first.frames == second.frames == []
