"""What a channel costs a worker and its bus once nobody is subscribed (issue 11, item 1).

Reading a channel creates nothing: subscribing to channels nobody publishes on, then leaving,
leaves no key in Redis, no channel in the in-process bus and, after ``unsubscribe_grace_s``,
no channel on the worker. A subscriber of such a channel is told ``("-", 0)``
(docs/protocol.md#recovery), gets the first publications live, and recovers them from there
after a reconnect. Every test runs on the in-process bus and on a real redis-server.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from herald_contract.envelope import pack_data
from herald_contract.memory_bus import MemoryBus
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient, assert_offsets_exactly, assert_still_open
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import metric, running_worker, ws_url

CONNECTIONS = 10
CHANNELS_EACH = 20
"""The review's churn in small: 10 anonymous connections, 20 fresh channels each."""

Stored = Callable[[], int]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def worker_and_store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Worker, Stored]]:
    """A worker on the parametrized bus, and what its bus stores (channels or Redis keys)."""
    overrides: dict[str, Any] = {"commands_per_s": 1000.0, "commands_burst": 1000}
    if request.param == "memory":
        async with running_worker(**overrides) as worker:
            bus = worker.bus
            assert isinstance(bus, MemoryBus)
            yield worker, lambda: bus.channel_count
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = server.client()
    async with running_worker(redis_url=server.url, **overrides) as worker:
        yield worker, lambda: int(client.dbsize())


def fresh_channel() -> str:
    return f"question:{secrets.randbelow(10**12)}"


async def churn(url: str, channels: int) -> None:
    """One anonymous connection subscribing to and leaving *channels* fresh channels."""
    client = HeraldTestClient(url)
    await client.open()
    try:
        for _ in range(channels):
            channel = fresh_channel()
            reply = await client.subscribe(channel)
            assert reply["result"] == {"epoch": "-", "offset": 0, "recovery": "none"}
            left = await client.request({"op": "unsubscribe", "channel": channel})
            assert left["type"] == "reply"
    finally:
        await client.close()


async def test_subscribe_churn_on_channels_nobody_publishes_leaves_nothing_behind(
    worker_and_store: tuple[Worker, Stored],
) -> None:
    worker, stored = worker_and_store
    baseline = stored()
    await asyncio.gather(*(churn(ws_url(worker), CHANNELS_EACH) for _ in range(CONNECTIONS)))
    assert stored() == baseline
    await eventually(lambda: worker.hub.channel_count == 0, timeout_s=20.0)
    assert metric(worker, "herald_channels_subscribed") == 0
    assert stored() == baseline


async def test_subscribe_churn_leaves_no_redis_subscription_after_the_grace(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    async with running_worker(redis_url=redis_server.url) as worker:
        await churn(ws_url(worker), 10)
        await eventually(lambda: worker.hub.channel_count == 0, timeout_s=20.0)
        await eventually(lambda: client.pubsub_channels() == [], timeout_s=20.0)
        assert client.dbsize() == 0


async def test_a_subscriber_of_a_channel_with_nothing_published_gets_the_first_ones_live(
    worker_and_store: tuple[Worker, Stored],
) -> None:
    worker, _ = worker_and_store
    channel = fresh_channel()
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        reply = await client.subscribe(channel)
        assert reply["result"] == {"epoch": "-", "offset": 0, "recovery": "none"}
        for n in range(3):
            await worker.bus.publish(channel, pack_data(n))
        await eventually(lambda: len(client.offsets(channel)) >= 3)
        assert_offsets_exactly(client, channel, [1, 2, 3])
        await assert_still_open(client)  # not closed with 4003 when the epoch came into being
        late = HeraldTestClient(ws_url(worker))
        await late.open()
        try:
            result = (await late.subscribe(channel))["result"]
            assert (result["epoch"] != "-", result["offset"]) == (True, 3)
        finally:
            await late.close()
    finally:
        await client.close()


async def test_a_client_that_saw_nothing_recovers_what_was_first_published_while_away(
    worker_and_store: tuple[Worker, Stored],
) -> None:
    worker, _ = worker_and_store
    channel = fresh_channel()
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        await client.subscribe(channel)
        await client.abort()
        for n in range(4):
            await worker.bus.publish(channel, pack_data(n))
        await client.reconnect()  # subscribes with since {"-", 0}
        assert client.channels[channel].recoveries == ["none", "recovered"]
        await eventually(lambda: len(client.offsets(channel)) >= 4)
        assert_offsets_exactly(client, channel, [1, 2, 3, 4])
        await worker.bus.publish(channel, pack_data("live"))
        await eventually(lambda: len(client.offsets(channel)) >= 5)
        assert client.data(channel)[-1] == "live"
    finally:
        await client.close()


async def test_a_client_told_nothing_learns_the_epoch_from_offset_1_and_recovers_from_it(
    worker_and_store: tuple[Worker, Stored],
) -> None:
    worker, _ = worker_and_store
    channel = fresh_channel()
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        await client.subscribe(channel)
        for n in range(2):
            await worker.bus.publish(channel, pack_data(n))
        await eventually(lambda: len(client.offsets(channel)) >= 2)
        log = client.channels[channel]
        top = (await worker.bus.publish(channel, pack_data("missed"))).position
        await eventually(lambda: len(client.offsets(channel)) >= 3)
        assert (log.epoch, log.offset) == (top.epoch, 3)  # the pub frame of offset 1 named it
        await client.abort()
        await worker.bus.publish(channel, pack_data("while away"))
        await client.reconnect()
        await eventually(lambda: len(client.offsets(channel)) >= 4)
        assert log.recoveries == ["none", "recovered"]
        assert_offsets_exactly(client, channel, [1, 2, 3, 4])
    finally:
        await client.close()


async def test_a_position_after_nothing_in_an_epoch_never_named_is_failed(
    worker_and_store: tuple[Worker, Stored],
) -> None:
    # An older client that kept "-" while applying publications: no history can vouch that
    # they were the current epoch's, so it reloads.
    worker, _ = worker_and_store
    channel = fresh_channel()
    for n in range(3):
        await worker.bus.publish(channel, pack_data(n))
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        since = {"epoch": "-", "offset": 2}
        reply = await client.request({"op": "subscribe", "channel": channel, "since": since})
        assert reply["result"]["recovery"] == "failed"
        assert reply["result"]["offset"] == 3
    finally:
        await client.close()
