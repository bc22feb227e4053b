"""The bus contract (herald_contract/bus.py), passed by the memory, Redis and cluster buses.

Every test runs once per bus, the Redis one against a real redis-server, the Redis Cluster
one against a real 3-primary cluster (one per module). What only one bus can show is in
test_memory_bus.py, test_redis_bus.py and test_redis_cluster_bus.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from herald_contract.bus import BusUnavailable, HistoryRead
from herald_contract.envelope import Envelope, StreamPosition, decode_envelope
from herald_contract.errors import BusStateError, InvalidPayload
from herald_contract.history import NO_EPOCH, NOTHING_PUBLISHED, Retention
from herald_contract.memory_bus import MemoryBus
from herald_contract.redis_bus import RedisBus
from herald_contract.redis_cluster_bus import RedisClusterBus
from tests.herald_contract.bus_support import (
    KEYS,
    Q1,
    Q2,
    Q3,
    FakeClock,
    Harness,
    Observer,
    Recorder,
    packed,
)
from tests.support.redis_cluster import RedisClusterTestbed
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

BusFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Build started buses of the parametrized kind with the given settings; close them.

    The cluster (3 primaries) is started once for the module and emptied before each test.
    """
    kind: str = request.param
    server: RedisServer | RedisClusterTestbed | None = None
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
    elif kind == "cluster":
        server = request.getfixturevalue("redis_cluster")
        server.flushall()
    harnesses: list[Harness] = []

    async def make(**settings: Any) -> Harness:
        listener, observer, clock = Recorder(), Observer(), FakeClock()
        bus: MemoryBus | RedisBus | RedisClusterBus
        if server is None:
            bus = MemoryBus(clock=clock, **settings)
        elif isinstance(server, RedisClusterTestbed):
            bus = RedisClusterBus(server.url, keys=KEYS, observer=observer, **settings)
        else:
            bus = RedisBus(server.url, keys=KEYS, observer=observer, **settings)
        await bus.start(listener)
        harness = Harness(kind, bus, listener, server, observer, clock)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        await harness.bus.close()


@pytest.fixture
async def bus(make_bus: BusFactory) -> Harness:
    return await make_bus()


# -- offsets and live delivery ---------------------------------------------------------------


async def test_publications_get_consecutive_offsets_from_1_in_one_epoch(bus: Harness) -> None:
    results = [await bus.bus.publish(Q1, packed(n)) for n in range(5)]
    assert [r.position.offset for r in results] == [1, 2, 3, 4, 5]
    assert len({r.position.epoch for r in results}) == 1
    assert not any(r.duplicate for r in results)


async def test_each_channel_counts_its_own_offsets(bus: Harness) -> None:
    assert [await bus.publish(Q1), await bus.publish(Q2), await bus.publish(Q1)] == [1, 1, 2]


async def test_a_subscribed_listener_receives_each_publication_once_in_order(
    bus: Harness,
) -> None:
    await bus.bus.subscribe(Q1)
    for n in range(20):
        await bus.publish(Q1, {"n": n})
    await eventually(lambda: len(bus.listener.offsets(Q1)) >= 20)
    await bus.settle()
    assert bus.listener.offsets(Q1) == list(range(1, 21))
    assert [e.data for e in bus.listener.envelopes(Q1)] == [{"n": n} for n in range(20)]


async def test_a_delivered_envelope_carries_epoch_offset_time_event_id_and_data(
    bus: Harness,
) -> None:
    await bus.bus.subscribe(Q1)
    before_ms = time.time_ns() // 1_000_000
    result = await bus.bus.publish(Q1, packed({"score": 7}), event_id="vote:1")
    after_ms = time.time_ns() // 1_000_000
    await eventually(lambda: len(bus.listener.received) == 1)
    [envelope] = bus.listener.envelopes(Q1)
    assert envelope == Envelope(
        result.position.epoch, 1, envelope.published_ms, "vote:1", {"score": 7}
    )
    # The wall clock of the machine (Redis's, for the Redis bus) when the offset was taken.
    assert before_ms <= envelope.published_ms <= after_ms


async def test_an_unsubscribed_channel_receives_nothing(bus: Harness) -> None:
    await bus.bus.subscribe(Q2)
    await bus.bus.unsubscribe(Q2)
    await bus.publish(Q1)
    await bus.publish(Q2)
    await bus.settle()
    assert bus.listener.offsets(Q1) == []
    assert bus.listener.offsets(Q2) == []


async def test_subscribing_twice_is_harmless_and_unknown_unsubscribes_are_ignored(
    bus: Harness,
) -> None:
    await bus.bus.subscribe(Q1)
    await bus.bus.subscribe(Q1)
    await bus.bus.unsubscribe(Q3)
    await bus.publish(Q1)
    await bus.settle()
    assert bus.listener.offsets(Q1) == [1]


async def test_concurrent_publishers_get_gap_free_offsets(bus: Harness) -> None:
    await bus.bus.subscribe(Q1)

    async def publisher(task: int) -> list[int]:
        return [await bus.publish(Q1, [task, n]) for n in range(25)]

    offsets = await asyncio.gather(*(publisher(task) for task in range(8)))
    assert sorted(o for task in offsets for o in task) == list(range(1, 201))
    await eventually(lambda: len(bus.listener.offsets(Q1)) == 200)
    assert bus.listener.offsets(Q1) == list(range(1, 201))


# -- history ---------------------------------------------------------------------------------


async def test_history_without_a_position_returns_the_position_only(bus: Harness) -> None:
    first = await bus.bus.publish(Q1, packed(1))
    await bus.publish(Q1)
    result = await bus.bus.history(Q1, None, 100)
    assert result.position == StreamPosition(first.position.epoch, 2)
    assert result.publications == []
    assert result.complete


async def test_history_after_a_position_returns_exactly_the_missed_publications_in_order(
    bus: Harness,
) -> None:
    first = await bus.bus.publish(Q1, packed("one"))
    epoch = first.position.epoch
    for data in ("two", "three", "four"):
        await bus.publish(Q1, data)
    result = await bus.bus.history(Q1, StreamPosition(epoch, 1), 100)
    decoded = [decode_envelope(raw) for raw in result.publications]
    assert [(e.offset, e.data) for e in decoded] == [(2, "two"), (3, "three"), (4, "four")]
    assert result.position == StreamPosition(epoch, 4)
    assert result.complete


async def test_history_at_the_top_is_complete_and_empty(bus: Harness) -> None:
    epoch = (await bus.bus.publish(Q1, packed(1))).position.epoch
    result = await bus.bus.history(Q1, StreamPosition(epoch, 1), 100)
    assert (result.publications, result.complete) == ([], True)


async def test_replayed_publications_are_byte_for_byte_the_live_ones(bus: Harness) -> None:
    await bus.bus.subscribe(Q1)
    epoch = (await bus.bus.publish(Q1, packed({"a": 1}))).position.epoch
    await bus.publish(Q1, {"b": [1, 2]}, event_id="e-2")
    await eventually(lambda: len(bus.listener.received) == 2)
    result = await bus.bus.history(Q1, StreamPosition(epoch, 0), 100)
    assert result.publications == [raw for _, raw in bus.listener.received]


async def test_history_older_than_the_size_window_is_incomplete(make_bus: BusFactory) -> None:
    harness = await make_bus(history_size=5)
    epoch = (await harness.bus.publish(Q1, packed(1))).position.epoch
    for n in range(2, 9):
        await harness.publish(Q1, n)
    too_old = await harness.bus.history(Q1, StreamPosition(epoch, 1), 100)
    assert not too_old.complete
    assert [decode_envelope(raw).offset for raw in too_old.publications] == [4, 5, 6, 7, 8]
    just_in = await harness.bus.history(Q1, StreamPosition(epoch, 3), 100)
    assert just_in.complete
    assert len(just_in.publications) == 5


async def test_history_older_than_the_age_window_is_incomplete(make_bus: BusFactory) -> None:
    harness = await make_bus(history_ttl_s=0.2)
    epoch = (await harness.bus.publish(Q1, packed(1))).position.epoch
    await harness.publish(Q1, 2)
    await harness.outlive_the_history_ttl(Q1, 0.2)
    await harness.publish(Q1, 3)
    stale = await harness.bus.history(Q1, StreamPosition(epoch, 0), 100)
    assert not stale.complete
    assert [decode_envelope(raw).offset for raw in stale.publications] == [3]
    fresh = await harness.bus.history(Q1, StreamPosition(epoch, 2), 100)
    assert fresh.complete


async def test_a_kind_with_its_own_size_keeps_that_many(make_bus: BusFactory) -> None:
    tag = "tag:python"
    harness = await make_bus(history_size=5, kind_retention={"tag": Retention(history_size=2)})
    for n in range(1, 9):
        await harness.publish(Q1, n)
        await harness.publish(tag, n)
    q_epoch, tag_epoch = (position.epoch for position in await harness.bus.positions([Q1, tag]))
    kept = await harness.bus.history(tag, StreamPosition(tag_epoch, 0), 100)
    assert [decode_envelope(raw).offset for raw in kept.publications] == [7, 8]
    assert (await harness.bus.history(tag, StreamPosition(tag_epoch, 6), 100)).complete
    question = await harness.bus.history(Q1, StreamPosition(q_epoch, 0), 100)
    assert [decode_envelope(raw).offset for raw in question.publications] == [4, 5, 6, 7, 8]


async def test_a_kind_with_its_own_age_forgets_at_that_age(make_bus: BusFactory) -> None:
    tag = "tag:python"
    harness = await make_bus(kind_retention={"tag": Retention(history_ttl_s=0.2)})
    epoch = (await harness.bus.publish(tag, packed(1))).position.epoch
    q_epoch = (await harness.bus.publish(Q1, packed(1))).position.epoch
    await harness.outlive_the_history_ttl(tag, 0.2)
    await harness.publish(tag, 2)
    await harness.publish(Q1, 2)
    stale = await harness.bus.history(tag, StreamPosition(epoch, 0), 100)
    assert [decode_envelope(raw).offset for raw in stale.publications] == [2]
    assert not stale.complete
    kept = await harness.bus.history(Q1, StreamPosition(q_epoch, 0), 100)
    assert kept.complete  # the installation's 900 s


async def test_history_cut_by_the_limit_is_incomplete(bus: Harness) -> None:
    epoch = (await bus.bus.publish(Q1, packed(1))).position.epoch
    for n in range(2, 7):
        await bus.publish(Q1, n)
    result = await bus.bus.history(Q1, StreamPosition(epoch, 1), 2)
    assert [decode_envelope(raw).offset for raw in result.publications] == [2, 3]
    assert not result.complete


async def test_history_of_another_epoch_is_incomplete(bus: Harness) -> None:
    await bus.publish(Q1)
    result = await bus.bus.history(Q1, StreamPosition("not-the-epoch", 0), 100)
    assert (result.publications, result.complete) == ([], False)


async def test_a_position_ahead_of_the_top_is_incomplete(bus: Harness) -> None:
    epoch = (await bus.bus.publish(Q1, packed(1))).position.epoch
    result = await bus.bus.history(Q1, StreamPosition(epoch, 5), 100)
    assert (result.publications, result.complete) == ([], False)


async def test_a_negative_position_is_incomplete(bus: Harness) -> None:
    epoch = (await bus.bus.publish(Q1, packed(1))).position.epoch
    result = await bus.bus.history(Q1, StreamPosition(epoch, -1), 100)
    assert (result.publications, result.complete) == ([], False)


# -- a channel with nothing published yet (docs/protocol.md#recovery) --------------------------


async def test_reading_a_never_published_channel_answers_nothing_published_and_stores_nothing(
    bus: Harness,
) -> None:
    for since in (None, NOTHING_PUBLISHED, StreamPosition("old", 4)):
        await bus.bus.history(Q1, since, 100)
    await bus.bus.history_many([HistoryRead(Q2, None, 100), HistoryRead(Q3, NOTHING_PUBLISHED, 9)])
    result = await bus.bus.history(Q1, None, 100)
    assert result.position == StreamPosition("-", 0) == NOTHING_PUBLISHED
    assert (result.publications, result.complete) == ([], True)
    assert bus.stored_channels() == 0


async def test_subscribing_and_unsubscribing_a_never_published_channel_stores_nothing(
    bus: Harness,
) -> None:
    for n in range(20):
        channel = f"question:{900 + n}"
        await bus.bus.subscribe(channel)
        await bus.bus.history(channel, None, 100)
        await bus.bus.unsubscribe(channel)
    assert bus.stored_channels() == 0


async def test_a_reader_that_saw_nothing_recovers_every_publication_of_the_first_epoch(
    bus: Harness,
) -> None:
    assert (await bus.bus.history(Q1, NOTHING_PUBLISHED, 100)).complete
    first = await bus.bus.publish(Q1, packed("first"))
    await bus.publish(Q1, "second")
    recovered = await bus.bus.history(Q1, NOTHING_PUBLISHED, 100)
    assert recovered.position == StreamPosition(first.position.epoch, 2)
    assert first.position.epoch != NO_EPOCH
    assert recovered.complete
    assert [decode_envelope(raw).data for raw in recovered.publications] == ["first", "second"]


async def test_a_reader_that_saw_nothing_fails_once_the_history_misses_the_first_offsets(
    make_bus: BusFactory,
) -> None:
    harness = await make_bus(history_size=2)
    for n in range(3):
        await harness.publish(Q1, n)
    result = await harness.bus.history(Q1, NOTHING_PUBLISHED, 100)
    assert not result.complete
    cut = await harness.bus.history(Q2, NOTHING_PUBLISHED, 0)
    assert cut.complete  # nothing published on Q2: nothing to miss
    await harness.publish(Q2, "x")
    assert not (await harness.bus.history(Q2, NOTHING_PUBLISHED, 0)).complete  # cut by the limit


async def test_a_position_past_nothing_published_is_never_recovered(bus: Harness) -> None:
    # ("-", n) would be publications of an epoch the reader never learned: it reloads.
    assert not (await bus.bus.history(Q1, StreamPosition(NO_EPOCH, 1), 100)).complete
    await bus.publish(Q1, 1)
    await bus.publish(Q1, 2)
    result = await bus.bus.history(Q1, StreamPosition(NO_EPOCH, 1), 100)
    assert (result.publications, result.complete) == ([], False)


async def test_a_reader_of_a_lost_epoch_fails_on_a_channel_that_has_nothing_now(
    bus: Harness,
) -> None:
    before = (await bus.bus.publish(Q1, packed(1))).position
    bus.lose_history()
    result = await bus.bus.history(Q1, before, 100)
    assert result.position == NOTHING_PUBLISHED
    assert not result.complete


async def test_many_reads_in_one_call_answer_as_the_same_reads_one_by_one(bus: Harness) -> None:
    epoch = (await bus.bus.publish(Q1, packed(1))).position.epoch
    for n in range(2, 6):
        await bus.publish(Q1, n)
    await bus.publish(Q2, "only")
    reads = [
        HistoryRead(Q1, StreamPosition(epoch, 2), 100),
        HistoryRead(Q2, None, 100),
        HistoryRead(Q3, StreamPosition("gone", 7), 100),  # never published: incomplete
        HistoryRead(Q1, StreamPosition(epoch, 0), 2),  # cut by the limit
    ]
    together = await bus.bus.history_many(reads)
    alone = [await bus.bus.history(r.channel, r.since, r.limit) for r in reads]
    assert together == alone
    assert [decode_envelope(e).offset for e in together[0].publications] == [3, 4, 5]
    assert [r.complete for r in together] == [True, True, False, False]
    assert await bus.bus.history_many([]) == []


async def test_many_reads_refuse_a_negative_limit_before_reading(bus: Harness) -> None:
    with pytest.raises(ValueError, match="limit"):
        await bus.bus.history_many([HistoryRead(Q1, None, 10), HistoryRead(Q2, None, -1)])


# -- positions -------------------------------------------------------------------------------


async def test_positions_answer_each_channels_top_in_the_order_asked(bus: Harness) -> None:
    epoch = (await bus.bus.publish(Q1, packed(1))).position.epoch
    await bus.publish(Q1, 2)
    q2 = (await bus.bus.publish(Q2, packed("only"))).position
    positions = await bus.bus.positions([Q2, Q1, Q3, Q1])
    assert positions == [q2, StreamPosition(epoch, 2), NOTHING_PUBLISHED, StreamPosition(epoch, 2)]
    assert await bus.bus.positions([]) == []


async def test_positions_are_the_positions_history_reads_answer(bus: Harness) -> None:
    for n in range(3):
        await bus.publish(Q1, n)
    await bus.publish(Q2, "x")
    channels = [Q1, Q2, Q3]
    alone = [(await bus.bus.history(c, None, 0)).position for c in channels]
    assert await bus.bus.positions(channels) == alone


async def test_positions_of_many_channels_in_one_call(bus: Harness) -> None:
    channels = [f"question:{n}" for n in range(300)]  # every slot owner of a cluster
    published = {c: (await bus.bus.publish(c, packed(c))).position for c in channels[::7]}
    positions = await bus.bus.positions(channels)
    assert positions == [published.get(c, NOTHING_PUBLISHED) for c in channels]


async def test_reading_positions_of_never_published_channels_stores_nothing(
    bus: Harness,
) -> None:
    assert await bus.bus.positions([Q1, Q2]) == [NOTHING_PUBLISHED, NOTHING_PUBLISHED]
    assert bus.stored_channels() == 0


async def test_positions_show_a_new_epoch_once_the_history_was_lost(bus: Harness) -> None:
    before = (await bus.bus.publish(Q1, packed(1))).position
    bus.lose_history()
    assert await bus.bus.positions([Q1]) == [NOTHING_PUBLISHED]
    after = (await bus.bus.publish(Q1, packed(2))).position
    assert await bus.bus.positions([Q1]) == [after]
    assert (after.offset, after.epoch != before.epoch) == (1, True)


async def test_positions_are_refused_by_a_closed_bus(bus: Harness) -> None:
    await bus.bus.close()
    with pytest.raises(BusUnavailable):
        await bus.bus.positions([Q1])


# -- idempotency -----------------------------------------------------------------------------


async def test_a_repeated_event_id_returns_the_first_position_and_delivers_once(
    bus: Harness,
) -> None:
    await bus.bus.subscribe(Q1)
    first = await bus.bus.publish(Q1, packed("a"), event_id="answer:77")
    await bus.publish(Q1, "other")
    again = await bus.bus.publish(Q1, packed("a"), event_id="answer:77")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.position == first.position
    await bus.settle()
    assert bus.listener.offsets(Q1) == [1, 2]


async def test_event_ids_are_remembered_per_channel(bus: Harness) -> None:
    one = await bus.bus.publish(Q1, packed(1), event_id="e")
    two = await bus.bus.publish(Q2, packed(2), event_id="e")
    assert (one.duplicate, two.duplicate) == (False, False)


async def test_a_malformed_event_id_is_refused(bus: Harness) -> None:
    with pytest.raises(InvalidPayload):
        await bus.bus.publish(Q1, packed(1), event_id="has space")
    with pytest.raises(InvalidPayload):
        await bus.bus.publish(Q1, packed(1), event_id="x" * 129)


# -- losing the history ----------------------------------------------------------------------


async def test_losing_the_history_changes_the_epoch_and_restarts_offsets_at_1(
    bus: Harness,
) -> None:
    before = await bus.bus.publish(Q1, packed(1))
    await bus.publish(Q1, 2)
    bus.lose_history()
    after = await bus.bus.publish(Q1, packed(3))
    assert after.position.offset == 1
    assert after.position.epoch != before.position.epoch
    result = await bus.bus.history(Q1, StreamPosition(before.position.epoch, 2), 100)
    assert not result.complete


# -- lifecycle -------------------------------------------------------------------------------


async def test_the_bus_is_live_after_start_and_not_after_close(bus: Harness) -> None:
    live_before = bus.bus.live
    await bus.bus.close()
    await bus.bus.close()
    assert (live_before, bus.bus.live) == (True, False)
    with pytest.raises(BusUnavailable):
        await bus.bus.subscribe(Q1)
    with pytest.raises(BusUnavailable):
        await bus.bus.publish(Q1, packed(1))


async def test_starting_a_bus_twice_is_refused_naming_its_state(bus: Harness) -> None:
    with pytest.raises(BusStateError, match="cannot start a bus that is live"):
        await bus.bus.start(Recorder())
    await bus.bus.close()
    with pytest.raises(BusStateError, match="closed"):
        await bus.bus.start(Recorder())
