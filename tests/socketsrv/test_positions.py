"""socketsrv/positions.py: position checks find a lost tail and repair it from history.

The first half drives a hub and a :class:`PositionChecker` on the in-process bus, made lossy
where a test needs live publications to vanish. The second half runs a real worker on a
real Redis behind a proxy that drops chosen pub/sub messages, or holds the subscriber
connection's traffic for a while (tests/support/tcp_proxy.py): what issue 12 (item 3) asks.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from herald_contract.bus import BusUnavailable
from herald_contract.envelope import StreamPosition, decode_envelope, pack_data
from herald_contract.keys import KeyLayout
from herald_contract.memory_bus import MemoryBus
from socketsrv.history import PIPELINE_READS
from socketsrv.hub import ChannelState, Hub
from socketsrv.metrics import Metrics, build_metrics
from socketsrv.positions import TICKS_PER_INTERVAL, PositionChecker
from socketsrv.protocol.codes import CloseCode
from socketsrv.settings import Settings, SettingsError
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient, assert_closed_with, assert_offsets_exactly
from tests.support.redis_server import RedisServer
from tests.support.subscribers import RecordingSubscriber
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually
from tests.support.worker import metric, running_worker, ws_url

Q1, Q2, BARRIER = "question:1", "question:2", "questions:new"


# -- a hub on a lossy in-process bus -----------------------------------------------------------


class LossyBus(MemoryBus):
    """The in-process bus, except that live publications a test picks never arrive (or come
    late: :meth:`release`), and that it can fail its position reads or stop being live."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.lose: Callable[[str, int], bool] = lambda channel, offset: False
        self.hold: Callable[[str, int], bool] = lambda channel, offset: False
        self.held: list[tuple[str, bytes]] = []
        self.position_calls: list[list[str]] = []
        self.history_reads = 0
        self.refuse_positions = False
        self.down = False

    @property
    def live(self) -> bool:
        return super().live and not self.down

    def _deliver(self, channel: str, envelope: bytes) -> None:
        offset = decode_envelope(envelope).offset
        if self.lose(channel, offset):
            return
        if self.hold(channel, offset):
            self.held.append((channel, envelope))
            return
        super()._deliver(channel, envelope)

    def release(self) -> None:
        """Deliver what was held, in order, now, and hold nothing more."""
        self.hold = lambda channel, offset: False
        held, self.held = self.held, []
        for channel, envelope in held:
            super()._deliver(channel, envelope)

    async def positions(self, channels: Sequence[str]) -> list[StreamPosition]:
        self.position_calls.append(list(channels))
        if self.refuse_positions:
            raise BusUnavailable("Redis is down")
        return await super().positions(channels)

    async def history(self, channel: str, since: StreamPosition | None, limit: int) -> Any:
        self.history_reads += 1
        return await super().history(channel, since, limit)


class Setup:
    """A started hub on a :class:`LossyBus`, its metrics and a checker."""

    def __init__(self, bus: LossyBus, hub: Hub, metrics: Metrics, checker: PositionChecker):
        self.bus, self.hub, self.metrics, self.checker = bus, hub, metrics, checker
        self.barrier: RecordingSubscriber | None = None

    async def subscriber(self, channel: str) -> RecordingSubscriber:
        sub = RecordingSubscriber()
        await self.hub.subscribe(sub, channel, None, sub.on_subscribed)
        return sub

    async def publish(self, channel: str, count: int = 1) -> StreamPosition:
        position = StreamPosition("", 0)
        for n in range(count):
            position = (await self.bus.publish(channel, pack_data(n))).position
        return position

    async def settle(self) -> None:
        """Return once every publication made so far reached the hub (or was lost): the
        in-process bus delivers in publication order, so a barrier's arrival says so."""
        if self.barrier is None:
            self.barrier = await self.subscriber(BARRIER)
        offset = (await self.publish(BARRIER)).offset
        barrier = self.barrier
        await eventually(lambda: offset in barrier.offsets)

    def counted(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    bus = LossyBus(history_size=50)
    metrics = build_metrics()
    hub = Hub(bus, metrics=metrics, history_limit=50, unsubscribe_grace_s=0.0)
    await bus.start(hub)
    yield Setup(
        bus, hub, metrics, PositionChecker(hub=hub, bus=bus, metrics=metrics, interval_s=10)
    )
    await hub.close()
    await bus.close()


async def test_a_lost_last_publication_is_delivered_by_the_second_check_that_misses_it(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q1)
    await setup.publish(Q1, 2)
    setup.bus.lose = lambda channel, offset: channel == Q1 and offset == 3
    await setup.publish(Q1)
    await setup.settle()
    assert sub.offsets == [1, 2]
    await setup.checker.check_all()
    assert (sub.offsets, setup.checker.noted) == ([1, 2], 1)
    await setup.checker.check_all()
    await eventually(lambda: sub.offsets == [1, 2, 3])
    assert setup.counted("herald_position_channels_behind_total") == 1
    await eventually(lambda: setup.counted("herald_position_repairs_total", result="repaired") == 1)
    assert setup.counted("herald_gap_repairs_total", result="repaired") == 1


async def test_one_check_finding_a_channel_behind_reads_no_history(setup: Setup) -> None:
    await setup.subscriber(Q1)
    setup.bus.hold = lambda channel, offset: channel == Q1
    await setup.publish(Q1)
    await setup.settle()
    reads_before = setup.bus.history_reads
    await setup.checker.check_all()
    assert setup.bus.history_reads == reads_before
    assert setup.counted("herald_position_channels_behind_total") == 0


async def test_a_publication_that_arrives_late_but_before_the_next_check_is_not_repaired(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q1)
    setup.bus.hold = lambda channel, offset: channel == Q1
    await setup.publish(Q1, 2)
    await setup.settle()
    await setup.checker.check_all()
    setup.bus.release()
    await eventually(lambda: sub.offsets == [1, 2])
    reads_before = setup.bus.history_reads
    await setup.checker.check_all()
    assert (setup.bus.history_reads, setup.checker.noted) == (reads_before, 0)
    assert sub.offsets == [1, 2]


async def test_a_channel_behind_a_newer_top_is_repaired_only_up_to_what_is_missing(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q1)
    setup.bus.lose = lambda channel, offset: channel == Q1 and offset == 1
    await setup.publish(Q1)
    await setup.settle()
    await setup.checker.check_all()
    setup.bus.hold = lambda channel, offset: channel == Q1 and offset == 2
    await setup.publish(Q1)  # in flight at the second check: repaired with the rest
    await setup.settle()
    await setup.checker.check_all()
    await eventually(lambda: sub.offsets == [1, 2])
    setup.bus.release()  # the live one, late: a duplicate, dropped
    await setup.settle()
    assert sub.offsets == [1, 2]


async def test_a_channel_in_step_is_never_noted(setup: Setup) -> None:
    sub = await setup.subscriber(Q1)
    await setup.publish(Q1, 3)
    await eventually(lambda: sub.offsets == [1, 2, 3])
    for _ in range(3):
        await setup.checker.check_all()
    assert setup.checker.noted == 0
    assert setup.counted("herald_position_channels_checked_total") == 3
    assert setup.counted("herald_position_checks_total", result="ok") == 3


async def test_the_lost_first_publication_of_a_channel_subscribed_before_it_is_delivered(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q2)  # nothing published yet: its stream is ("-", 0)
    setup.bus.lose = lambda channel, offset: channel == Q2
    await setup.publish(Q2)
    await setup.checker.check_all()
    await setup.checker.check_all()
    await eventually(lambda: sub.offsets == [1])
    setup.bus.lose = lambda channel, offset: False
    await setup.publish(Q2)
    await eventually(lambda: sub.offsets == [1, 2])


async def test_a_loss_the_history_no_longer_covers_closes_the_subscribers_with_4003(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q1)
    await setup.publish(Q1)
    await setup.settle()
    setup.bus.lose = lambda channel, offset: channel == Q1
    await setup.publish(Q1, 60)  # more than the history's 50
    await setup.checker.check_all()
    await setup.checker.check_all()
    await eventually(lambda: sub.closed_with is CloseCode.STATE_LOST)
    assert sub.offsets == [1]
    await eventually(lambda: setup.counted("herald_position_repairs_total", result="failed") == 1)


async def test_an_epoch_change_seen_by_a_check_closes_the_subscribers_with_4003(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q1)
    await setup.publish(Q1, 2)
    await eventually(lambda: sub.offsets == [1, 2])
    setup.bus.forget_history()
    setup.bus.lose = lambda channel, offset: channel == Q1
    await setup.publish(Q1)  # offset 1 of a new epoch, lost
    await setup.checker.check_all()
    await setup.checker.check_all()
    await eventually(lambda: sub.closed_with is CloseCode.STATE_LOST)
    assert sub.offsets == [1, 2]


async def test_channels_without_subscribers_or_being_repaired_are_not_checked(
    setup: Setup,
) -> None:
    sub = await setup.subscriber(Q1)
    setup.hub.unsubscribe(sub, Q1)  # in its grace period, held but empty
    await setup.subscriber(Q2)
    (q2,) = [ch for ch in setup.hub.channels() if ch.name == Q2]
    q2.state = ChannelState.REPAIRING
    await setup.checker.check_all()
    assert setup.bus.position_calls == []


async def test_a_tick_checks_its_share_and_a_round_checks_every_channel_once(
    setup: Setup,
) -> None:
    channels = [f"question:{n}" for n in range(25)]
    for channel in channels:
        await setup.subscriber(channel)
    for _ in range(TICKS_PER_INTERVAL):
        await setup.checker.tick()
    share = math.ceil(len(channels) / TICKS_PER_INTERVAL)
    assert [len(call) for call in setup.bus.position_calls] == [share] * 8 + [1]  # none left
    assert sorted(c for call in setup.bus.position_calls for c in call) == sorted(channels)
    await setup.checker.tick()  # the next round starts
    assert setup.bus.position_calls[-1] == channels[:share]


async def test_a_channel_is_checked_once_a_round_however_few_there_are(setup: Setup) -> None:
    await setup.subscriber(Q1)
    for _ in range(2 * TICKS_PER_INTERVAL):
        await setup.checker.tick()
    assert setup.bus.position_calls == [[Q1], [Q1]]


async def test_a_check_reads_at_most_a_pipeline_of_channels_per_bus_call(setup: Setup) -> None:
    count = 2 * PIPELINE_READS + 7
    for n in range(count):
        await setup.subscriber(f"question:{n}")
    await setup.checker.check_all()
    assert [len(call) for call in setup.bus.position_calls] == [PIPELINE_READS] * 2 + [7]
    assert setup.counted("herald_position_checks_total", result="ok") == 3


async def test_a_failed_position_read_is_counted_and_judges_nothing(setup: Setup) -> None:
    await setup.subscriber(Q1)
    setup.bus.refuse_positions = True
    await setup.checker.check_all()
    assert setup.counted("herald_position_checks_total", result="failed") == 1
    assert setup.counted("herald_position_channels_checked_total") == 0


async def test_nothing_is_checked_while_the_bus_is_not_live(setup: Setup) -> None:
    await setup.subscriber(Q1)
    setup.bus.down = True
    await setup.checker.check_all()
    await setup.checker.tick()
    assert setup.bus.position_calls == []


async def test_a_checker_needs_a_positive_interval(setup: Setup) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        PositionChecker(hub=setup.hub, bus=setup.bus, metrics=setup.metrics, interval_s=0)


# -- settings ---------------------------------------------------------------------------------


def test_position_checks_run_every_10_s_by_default_and_0_turns_them_off() -> None:
    assert Settings().position_check_interval_s == 10.0
    assert Settings(position_check_interval_s=0).position_check_interval_s == 0.0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "often"])
def test_a_bad_position_check_interval_is_refused(bad: Any) -> None:
    with pytest.raises(SettingsError, match=r"(?i)position_check_interval_s"):
        Settings.from_env({"HERALD_POSITION_CHECK_INTERVAL_S": str(bad)})


# -- a worker on Redis behind a lossy proxy ------------------------------------------------------


KEYS = KeyLayout()
LIVE_Q1 = KEYS.live(Q1).encode()


def offset_of(payload: bytes) -> int:
    return decode_envelope(payload).offset


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(redis_server.port) as p:
        yield p


async def subscribed_client(worker: Worker, *channels: str) -> HeraldTestClient:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    for channel in channels:
        await client.subscribe(channel)
    return client


async def publish(worker: Worker, channel: str, data: Any) -> int:
    return (await worker.bus.publish(channel, pack_data(data))).position.offset


async def barrier(worker: Worker, client: HeraldTestClient) -> None:
    """Return once the client received a publication made now on BARRIER: everything the
    pub/sub connection carried before it has reached the worker (one connection, in order)."""
    offset = await publish(worker, BARRIER, "barrier")
    await eventually(lambda: offset in client.offsets(BARRIER))


@pytest.mark.parametrize("interval_s", [3600.0, 0.0], ids=["checks-on", "checks-off"])
async def test_a_dropped_last_publication_reaches_the_client_only_with_position_checks(
    proxy: TcpProxy, interval_s: float
) -> None:
    async with running_worker(redis_url=proxy.url, position_check_interval_s=interval_s) as worker:
        client = await subscribed_client(worker, Q1, BARRIER)
        for n in (1, 2):
            await publish(worker, Q1, n)
        proxy.drop_messages(lambda channel, payload: channel == LIVE_Q1 and offset_of(payload) == 3)
        await publish(worker, Q1, 3)  # the channel then goes quiet
        await barrier(worker, client)
        assert [offset_of(p) for _, p in proxy.dropped] == [3]
        assert client.offsets(Q1) == [1, 2]
        checks_on = await worker.check_positions()
        await worker.check_positions()
        if checks_on:
            await eventually(lambda: client.offsets(Q1) == [1, 2, 3])
            assert metric(worker, "herald_position_channels_behind_total") == 1
        await barrier(worker, client)
        assert_offsets_exactly(client, Q1, [1, 2, 3] if checks_on else [1, 2])
        assert client.data(Q1) == ([1, 2, 3] if checks_on else [1, 2])
        await client.close()


async def test_a_paused_subscriber_connection_loses_and_repeats_nothing(proxy: TcpProxy) -> None:
    async with running_worker(redis_url=proxy.url, position_check_interval_s=3600.0) as worker:
        client = await subscribed_client(worker, Q1, Q2)
        await publish(worker, Q1, 1)
        await eventually(lambda: client.offsets(Q1) == [1])
        assert proxy.pubsub_links == 1
        proxy.pause_pubsub()
        for n in range(2, 6):
            await publish(worker, Q1, n)
        await publish(worker, Q2, "q2")
        await worker.check_positions()
        await worker.check_positions()  # still behind what the first saw: repaired
        await eventually(lambda: client.offsets(Q1) == [1, 2, 3, 4, 5])
        await eventually(lambda: client.offsets(Q2) == [1])
        proxy.resume_pubsub()  # the held live copies arrive: duplicates, dropped
        await publish(worker, Q1, 6)
        await eventually(lambda: client.offsets(Q1)[-1:] == [6])
        assert_offsets_exactly(client, Q1, [1, 2, 3, 4, 5, 6])
        assert_offsets_exactly(client, Q2, [1])
        assert metric(worker, "herald_position_repairs_total", result="repaired") == 2
        await client.close()


async def test_a_dropped_tail_the_history_lost_ends_in_4003_and_a_failed_recovery(
    proxy: TcpProxy,
) -> None:
    async with running_worker(
        redis_url=proxy.url, position_check_interval_s=3600.0, history_size=2
    ) as worker:
        client = await subscribed_client(worker, Q1)
        await publish(worker, Q1, 1)
        await eventually(lambda: client.offsets(Q1) == [1])
        proxy.drop_messages(lambda channel, payload: channel == LIVE_Q1)
        for n in range(2, 6):
            await publish(worker, Q1, n)  # 2 and 3 are gone from the history of 2
        await worker.check_positions()
        await worker.check_positions()
        await assert_closed_with(client, CloseCode.STATE_LOST)
        proxy.drop_messages(None)
        await client.reconnect()
        assert client.channels[Q1].recoveries[-1] == "failed"
        assert client.offsets(Q1) == [1]
        await eventually(
            lambda: metric(worker, "herald_position_repairs_total", result="failed") == 1
        )
        await client.close()
