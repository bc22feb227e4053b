"""herald_contract/redis_bus.py beyond the shared contract: what only a bus with a connection
to lose can show (Redis restarts, silences, confirmations), against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from herald_contract.backoff import Backoff
from herald_contract.bus import BusUnavailable
from herald_contract.envelope import decode_envelope
from herald_contract.lifecycle import BusState
from herald_contract.redis_bus import RedisBus
from publisher.publish import Publisher
from tests.herald_contract.bus_support import KEYS, Q1, Q2, Harness, Observer, Recorder, packed
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually


@pytest.fixture
async def redis_bus(redis_server: RedisServer) -> AsyncIterator[Harness]:
    listener, observer = Recorder(), Observer()
    bus = RedisBus(
        redis_server.url,
        keys=KEYS,
        observer=observer,
        backoff=Backoff(base_s=0.02, cap_s=0.2),
        ping_interval_s=0.2,
    )
    await bus.start(listener)
    yield Harness("redis", bus, listener, redis_server, observer)
    await bus.close()


async def test_a_closed_redis_bus_delivers_nothing_more(redis_bus: Harness) -> None:
    assert redis_bus.server is not None
    watcher, seen = RedisBus(redis_bus.server.url, keys=KEYS), Recorder()
    await watcher.start(seen)
    await redis_bus.bus.subscribe(Q1)
    await watcher.subscribe(Q1)
    await redis_bus.bus.close()
    await watcher.publish(Q1, packed("after the close"))
    # The watcher got it over its own connection: the closed bus's reader would have too.
    await eventually(lambda: seen.offsets(Q1) == [1])
    await watcher.close()
    assert redis_bus.listener.received == []
    assert redis_bus.observer.live == [True, False]


async def test_after_a_redis_restart_the_bus_is_lost_then_restored_and_resubscribed(
    redis_bus: Harness,
) -> None:
    await redis_bus.bus.subscribe(Q1)
    await redis_bus.bus.subscribe(Q2)
    assert redis_bus.server is not None
    redis_bus.server.restart(keep_data=False)
    await eventually(lambda: redis_bus.listener.events == ["lost", "restored"])
    assert redis_bus.bus.live
    await redis_bus.publish(Q1, "after")
    await redis_bus.publish(Q2, "after")
    await eventually(lambda: len(redis_bus.listener.received) == 2)
    assert redis_bus.observer.reconnects == 1
    assert redis_bus.observer.live == [True, False, True]
    assert redis_bus.observer.recoveries == [("connection_lost", 2)]
    assert redis_bus.observer.shards == [1, 0, 1]


async def test_a_restart_that_keeps_the_data_goes_on_in_a_new_epoch(redis_bus: Harness) -> None:
    # A restarted Redis may have lost its last acknowledged writes (an AOF fsynced every
    # second): its first write of the channel starts a new epoch, offsets going on.
    await redis_bus.bus.subscribe(Q1)
    first = await redis_bus.bus.publish(Q1, packed(1))
    assert redis_bus.server is not None
    redis_bus.server.restart(keep_data=True)
    await eventually(lambda: redis_bus.listener.events == ["lost", "restored"])
    second = await redis_bus.bus.publish(Q1, packed(2))
    assert second.position.offset == 2
    assert second.position.epoch != first.position.epoch
    assert not (await redis_bus.bus.history(Q1, first.position, 100)).complete
    assert (await redis_bus.bus.history(Q1, second.position, 100)).complete


async def test_publications_missed_while_reconnecting_are_in_the_history(
    redis_bus: Harness,
) -> None:
    await redis_bus.bus.subscribe(Q1)
    seen = await redis_bus.bus.publish(Q1, packed("seen"))
    await eventually(lambda: redis_bus.listener.offsets(Q1) == [1])
    assert redis_bus.server is not None
    redis_bus.server.client().client_kill_filter(_type="pubsub")
    async with Publisher(redis_bus.server.url, prefix="test") as outside:
        await outside.publish(Q1, "maybe missed")
    await eventually(lambda: redis_bus.listener.events == ["lost", "restored"])
    # The observer heard the loss (CLIENT KILL: the connection closed) and the recovery.
    assert redis_bus.observer.recoveries == [("connection_lost", 1)]
    assert redis_bus.observer.shards == [1, 0, 1]
    assert all(seconds >= 0 for seconds in redis_bus.observer.recovery_seconds)
    repaired = await redis_bus.bus.history(Q1, seen.position, 100)
    assert repaired.complete
    assert [decode_envelope(raw).data for raw in repaired.publications] == ["maybe missed"]


async def test_while_redis_is_down_calls_fail_with_bus_unavailable(redis_bus: Harness) -> None:
    assert redis_bus.server is not None
    await redis_bus.bus.subscribe(Q1)
    redis_bus.server.stop()
    await eventually(lambda: redis_bus.listener.events == ["lost"])
    assert not redis_bus.bus.live
    assert redis_bus.bus.state is BusState.RECOVERING
    assert redis_bus.observer.live == [True, False]
    with pytest.raises(BusUnavailable):
        await redis_bus.bus.subscribe(Q2)
    with pytest.raises(BusUnavailable):
        await redis_bus.bus.publish(Q1, packed(1))
    with pytest.raises(BusUnavailable):
        await redis_bus.bus.history(Q1, None, 10)
    redis_bus.server.start()
    await eventually(lambda: redis_bus.listener.events == ["lost", "restored"])
    await redis_bus.publish(Q1)
    await eventually(lambda: redis_bus.listener.offsets(Q1) == [1])


async def test_a_silent_redis_is_found_by_ping(redis_bus: Harness) -> None:
    assert redis_bus.server is not None
    await redis_bus.bus.subscribe(Q1)
    sleeper = redis_bus.server.client()
    # DEBUG SLEEP freezes the server: the connection stays open but nothing answers.
    await asyncio.to_thread(sleeper.execute_command, "DEBUG", "SLEEP", "0.8")
    await eventually(lambda: redis_bus.listener.events == ["lost", "restored"])
    assert redis_bus.observer.recoveries == [("ping_timeout", 1)]
    await redis_bus.publish(Q1)
    await eventually(lambda: redis_bus.listener.offsets(Q1) == [1])


async def test_subscribe_returns_only_after_redis_confirmed_it(redis_bus: Harness) -> None:
    assert redis_bus.server is not None
    async with Publisher(redis_bus.server.url, prefix="test") as outside:
        for n in range(1, 201):
            channel = f"question:{n}"
            await redis_bus.bus.subscribe(channel)
            await outside.publish(channel, n)
        await eventually(lambda: len(redis_bus.listener.received) == 200)
    assert {name for name, _ in redis_bus.listener.received} == {
        f"question:{n}" for n in range(1, 201)
    }


async def test_resubscribing_after_unsubscribing_waits_for_the_new_confirmation(
    redis_bus: Harness,
) -> None:
    assert redis_bus.server is not None
    async with Publisher(redis_bus.server.url, prefix="test") as outside:
        for n in range(50):
            await redis_bus.bus.subscribe(Q1)
            await redis_bus.bus.unsubscribe(Q1)
            await redis_bus.bus.subscribe(Q1)
            await outside.publish(Q1, n)
            await eventually(lambda: len(redis_bus.listener.received) == n + 1)  # noqa: B023
            await redis_bus.bus.unsubscribe(Q1)
    assert [e.data for e in redis_bus.listener.envelopes(Q1)] == list(range(50))


async def test_redis_bus_start_fails_with_bus_unavailable_when_redis_is_down(
    redis_server: RedisServer,
) -> None:
    redis_server.stop()
    bus = RedisBus(redis_server.url, keys=KEYS)
    with pytest.raises(BusUnavailable):
        await bus.start(Recorder())
    assert bus.state is BusState.NEW
    await bus.close()


async def test_no_connection_of_the_bus_sends_client_setinfo(redis_server: RedisServer) -> None:
    """Redis before 7.2 answers CLIENT SETINFO with an error; a storm once read those errors
    as the replies of history reads (herald_contract/redis_pools.py: NO_CLIENT_SETINFO).
    redis-py sends it on connect from its connection's ``driver_info``."""
    bus = RedisBus(redis_server.url, keys=KEYS)
    await bus.start(Recorder())
    try:
        await bus.subscribe(Q1)
        await bus.publish(Q1, packed("one"))
        await bus.history(Q1, None, 10)
        pools = [bus._client.connection_pool, bus._pubsub._pool]  # type: ignore[union-attr]
        for pool in pools:
            connection = await pool.get_connection()
            try:
                assert connection.is_connected
                assert connection.driver_info is None
            finally:
                await pool.release(connection)
    finally:
        await bus.close()
