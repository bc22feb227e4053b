"""Honest delivery status: a worker tells its clients when its bus is down, and when delivery
is live again with every channel repaired (docs/protocol.md#delivery; socketsrv/hub.py).

The worker tests run on a real redis-server that the test stops and starts again; the
ordering test (what was missed comes before "live") drives the hub over the in-process bus,
where the test chooses which live publications are lost.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest

from herald_contract.backoff import Backoff
from herald_contract.envelope import pack_data
from herald_contract.memory_bus import MemoryBus
from socketsrv.hub import DeliveryState, Hub
from socketsrv.metrics import build_metrics
from socketsrv.protocol import frames
from socketsrv.protocol.commands import WireFormat
from socketsrv.worker import Worker
from tests.socketsrv.test_hub import LossyBus
from tests.support.client import HeraldTestClient, assert_closed_with
from tests.support.raw_ws import (
    OP_TEXT,
    RawConnection,
    client_frame,
    parse_server_frame,
    raw_connection,
)
from tests.support.redis_server import RedisServer
from tests.support.subscribers import RecordingSubscriber
from tests.support.waiting import eventually
from tests.support.worker import metric, publish, running_worker, ws_url

CHANNEL = "question:1"
QUICK_RECONNECTS = Backoff(base_s=0.01, cap_s=0.1, rng=random.Random(7))


def decoded(frame: bytes, wire: WireFormat = WireFormat.JSON) -> dict[str, Any]:
    _, payload = parse_server_frame(frame)
    message: dict[str, Any] = (
        json.loads(payload) if wire is WireFormat.JSON else msgpack.unpackb(payload)
    )
    return message


def told(sub: RecordingSubscriber) -> list[str]:
    """What *sub* was told, in order: ``pub <offset>`` or ``delivery <state>``."""
    said = []
    for frame in sub.frames:
        message = decoded(frame, sub.wire)
        if message["type"] == "pub":
            said.append(f"pub {message['offset']}")
        else:
            said.append(f"{message['type']} {message['state']}")
    return said


async def next_message(conn: RawConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    """The next server message on a raw connection other than a heartbeat (the sweep sends
    one on its first visit, whenever that comes)."""
    while True:
        _, payload = await conn.read_frame(timeout=timeout_s)
        message: dict[str, Any] = json.loads(payload)
        if message["type"] != "hb":
            return message


async def connected(worker: Worker, *, msgpack_wire: bool = False) -> HeraldTestClient:
    client = HeraldTestClient(ws_url(worker), msgpack_wire=msgpack_wire)
    reply = await client.open()
    assert reply is not None and reply["type"] == "reply", reply
    return client


# The frames, as docs/protocol.md#delivery writes them


def test_the_delivery_frames_are_the_documented_json_and_msgpack_maps() -> None:
    for state in ("paused", "live"):
        delivery = frames.Delivery(state)
        json_frame = frames.DELIVERY[delivery][WireFormat.JSON]
        opcode_json, payload = parse_server_frame(json_frame)
        assert (opcode_json, payload) == (
            OP_TEXT,
            f'{{"type":"delivery","state":"{state}"}}'.encode(),
        )
        binary = frames.DELIVERY[delivery][WireFormat.MSGPACK]
        opcode_binary, packed = parse_server_frame(binary)
        assert opcode_binary == 0x2
        assert msgpack.unpackb(packed) == {"type": "delivery", "state": state}
    paused = parse_server_frame(frames.DELIVERY[frames.Delivery.PAUSED][WireFormat.MSGPACK])[1]
    assert paused.hex(" ") == (  # as docs/protocol.md#delivery spells the bytes out
        "82 a4 74 79 70 65 a8 64 65 6c 69 76 65 72 79 a5 73 74 61 74 65 a6 70 61 75 73 65 64"
    )


# The hub: who is told what, and when


async def test_a_bus_outage_pauses_then_resumes_only_after_the_missed_publications_went_out() -> (
    None
):
    bus = LossyBus(MemoryBus(history_size=50))
    hub = Hub(bus, metrics=build_metrics(), history_limit=50, unsubscribe_grace_s=0.0)
    await bus.start(hub)
    try:
        sub = RecordingSubscriber()
        bystander = RecordingSubscriber(WireFormat.MSGPACK)  # no channel: told all the same
        hub.attend(sub)
        hub.attend(bystander)
        await hub.subscribe(sub, CHANNEL, None, sub.on_subscribed)
        await bus.publish(CHANNEL, pack_data({"n": 1}))
        await eventually(lambda: told(sub) == ["pub 1"])

        hub.on_bus_lost()
        bus.drop = {2, 3}
        for n in (2, 3):
            await bus.publish(CHANNEL, pack_data({"n": n}))  # lost on the way, as in an outage
        assert told(sub) == ["pub 1", "delivery paused"]
        assert hub.delivery.value == "paused"

        hub.on_bus_restored()
        assert hub.delivery.value == "resuming"
        await eventually(lambda: hub.delivery is DeliveryState.LIVE)
        assert told(sub) == ["pub 1", "delivery paused", "pub 2", "pub 3", "delivery live"]
        assert told(bystander) == ["delivery paused", "delivery live"]
        assert bystander.frames[0] == frames.DELIVERY[frames.Delivery.PAUSED][WireFormat.MSGPACK]
    finally:
        await hub.close()
        await bus.close()


async def test_a_bus_lost_again_while_resuming_stays_paused_and_says_so_once() -> None:
    bus = LossyBus(MemoryBus(history_size=50))
    hub = Hub(bus, metrics=build_metrics(), history_limit=50, unsubscribe_grace_s=0.0)
    await bus.start(hub)
    try:
        sub = RecordingSubscriber()
        hub.attend(sub)
        await hub.subscribe(sub, CHANNEL, None, sub.on_subscribed)
        await bus.publish(CHANNEL, pack_data({"n": 1}))
        await eventually(lambda: told(sub) == ["pub 1"])
        bus.refuse_histories = 1_000  # the repair cannot read the history yet

        hub.on_bus_lost()
        hub.on_bus_restored()
        hub.on_bus_lost()
        assert hub.delivery is DeliveryState.PAUSED
        assert told(sub) == ["pub 1", "delivery paused"]

        bus.refuse_histories = 0
        hub.on_bus_restored()
        await eventually(lambda: hub.delivery is DeliveryState.LIVE)
        assert told(sub) == ["pub 1", "delivery paused", "delivery live"]
    finally:
        await hub.close()
        await bus.close()


async def test_a_removed_connection_is_told_nothing_more() -> None:
    bus = LossyBus(MemoryBus(history_size=50))
    hub = Hub(bus, metrics=build_metrics(), history_limit=50, unsubscribe_grace_s=0.0)
    await bus.start(hub)
    try:
        gone, staying = RecordingSubscriber(), RecordingSubscriber()
        hub.attend(gone)
        hub.attend(staying)
        hub.remove(gone, set())
        hub.on_bus_lost()
        assert told(gone) == []
        assert told(staying) == ["delivery paused"]
        assert hub.audience_count == 1
    finally:
        await hub.close()
        await bus.close()


# A worker on a real Redis that stops and starts again


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_connected_clients_are_told_paused_when_redis_stops_and_live_after_the_repair(
    redis_server: RedisServer,
) -> None:
    async with running_worker(redis_url=redis_server.url) as worker:
        subscribed = await connected(worker)
        idle = await connected(worker, msgpack_wire=True)  # no channel: told all the same
        try:
            assert (await subscribed.subscribe(CHANNEL))["type"] == "reply"
            await publish(worker, CHANNEL, {"score": 1})
            await eventually(lambda: subscribed.data(CHANNEL) == [{"score": 1}])

            await asyncio.to_thread(redis_server.stop)
            await eventually(lambda: subscribed.delivery == idle.delivery == ["paused"], 20)
            assert not worker.bus.live

            await asyncio.to_thread(redis_server.start)
            await eventually(lambda: idle.delivery == ["paused", "live"], 20)
            # "live" came once the channel was dealt with: a restarted Redis is a new writer,
            # so the channel's history is another epoch and its subscriber was closed to
            # recover (docs/protocol.md#after-a-redis-failover), never left silently behind.
            assert metric(worker, "herald_gap_repairs_total", result="lost") == 1
            await assert_closed_with(subscribed, 4003)
            assert subscribed.delivery == ["paused"]
            assert worker.hub.delivery is DeliveryState.LIVE
        finally:
            await subscribed.close()
            await idle.close()


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_a_client_connecting_while_redis_is_down_is_told_paused_just_before_the_reply(
    redis_server: RedisServer,
) -> None:
    async with running_worker(redis_url=redis_server.url) as worker:
        await asyncio.to_thread(redis_server.stop)
        await eventually(lambda: worker.hub.delivery is DeliveryState.PAUSED, 20)
        async with raw_connection(worker.port) as conn:
            await conn.open_websocket()
            await conn.send(client_frame(OP_TEXT, b'{"op": "connect", "id": 1}'))
            # Both are written in one go: no heartbeat can come between them.
            _, first = await conn.read_frame()
            _, second = await conn.read_frame()
            assert json.loads(first) == {"type": "delivery", "state": "paused"}
            assert json.loads(second)["type"] == "reply"

            await asyncio.to_thread(redis_server.start)
            assert await next_message(conn, 20) == {"type": "delivery", "state": "live"}


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_a_worker_whose_redis_was_down_at_start_says_live_once_its_bus_starts(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis")  # its port chosen, the server not started yet
    try:
        async with running_worker(
            redis_url=redis.url, bus_backoff=QUICK_RECONNECTS, wait_for_bus=False
        ) as worker:
            client = await connected(worker)
            try:
                await eventually(lambda: client.delivery == ["paused"])
                await asyncio.to_thread(redis.start)
                await worker.bus_started()
                await eventually(lambda: client.delivery == ["paused", "live"], 20)
                late = await connected(worker)  # the bus is live: nothing to say
                await publish(worker, CHANNEL, {"score": 1})
                assert (await late.request({"op": "ping"}))["type"] == "reply"
                assert late.delivery == []
                await late.close()
            finally:
                await client.close()
    finally:
        redis.close()


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_a_client_connecting_while_redis_is_up_is_told_nothing(
    redis_server: RedisServer,
) -> None:
    async with (
        running_worker(redis_url=redis_server.url) as worker,
        raw_connection(worker.port) as conn,
    ):
        await conn.open_websocket()
        await conn.send(client_frame(OP_TEXT, b'{"op": "connect", "id": 1}'))
        await conn.send(client_frame(OP_TEXT, b'{"op": "ping", "id": 2}'))
        first, second = await next_message(conn), await next_message(conn)
        assert [first["id"], second["id"]] == [1, 2]
