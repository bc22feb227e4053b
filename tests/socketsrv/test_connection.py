"""socketsrv/connection.py: the opening handshake, the wire formats and the plain HTTP paths.

One real worker per test on a loopback port; clients are the ``websockets`` library or raw
TCP (tests/support/raw_ws.py) when a test needs what a well-behaved client never sends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from socketsrv.worker import Worker, WorkerState
from tests.support.client import HeraldTestClient
from tests.support.raw_ws import (
    get_request,
    http_get,
    parse_http_answer,
    raw_connection,
    upgrade_request,
)
from tests.support.waiting import eventually
from tests.support.worker import handshake_rejections, publish, running_worker, ws_url

GOOD_ORIGIN = "https://ok.example"


async def assert_handshake_refused(url: str, status: int, **options: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=5, **options):
            pass
    assert refused.value.response.status_code == status


async def receive_msgpack(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(frame, bytes), f"expected a binary frame, got text {frame!r}"
    message = msgpack.unpackb(frame)
    assert isinstance(message, dict)
    return message


# Subprotocols and wire formats


async def test_a_client_that_offers_no_subprotocol_speaks_json(worker: Worker) -> None:
    async with connect(ws_url(worker), open_timeout=5) as ws:
        assert ws.subprotocol is None
        assert ws.response is not None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers  # RFC 6455 section 4.2.2
        await ws.send(json.dumps({"op": "connect", "id": 1}))
        reply = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(reply, str)
    assert json.loads(reply)["type"] == "reply"


async def test_the_msgpack_subprotocol_gets_binary_replies_publications_and_errors(
    worker: Worker,
) -> None:
    async with connect(
        ws_url(worker), subprotocols=[Subprotocol("herald.v1.msgpack")], open_timeout=5
    ) as ws:
        assert ws.subprotocol == "herald.v1.msgpack"
        await ws.send(msgpack.packb({"op": "connect", "id": 1}))
        assert (await receive_msgpack(ws))["type"] == "reply"
        await ws.send(msgpack.packb({"op": "subscribe", "id": 2, "channel": "question:1"}))
        assert (await receive_msgpack(ws))["result"]["recovery"] == "none"
        await publish(worker, "question:1", {"score": 3})
        pub = await receive_msgpack(ws)
        await ws.send(msgpack.packb({"op": "bogus", "id": 3}))
        error = await receive_msgpack(ws)
    assert pub == {"type": "pub", "channel": "question:1", "offset": 1, "data": {"score": 3}}
    assert (error["type"], error["id"], error["code"]) == ("error", 3, 404)


async def test_the_first_herald_subprotocol_offered_is_chosen(worker: Worker) -> None:
    offered = [Subprotocol("chat.v2"), Subprotocol("herald.v1.msgpack")]
    async with connect(ws_url(worker), subprotocols=offered, open_timeout=5) as ws:
        assert ws.subprotocol == "herald.v1.msgpack"


async def test_only_unknown_subprotocols_are_refused_with_400_and_counted(worker: Worker) -> None:
    await assert_handshake_refused(ws_url(worker), 400, subprotocols=[Subprotocol("chat.v2")])
    assert handshake_rejections(worker, "subprotocol") == 1
    assert len(worker.connections) == 0


# Origins and capacity


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(GOOD_ORIGIN, id="allowed-site"),
        pytest.param(None, id="no-origin-header-so-not-a-browser"),
    ],
)
async def test_an_allowed_origin_or_none_is_accepted(origin: str | None) -> None:
    async with running_worker(origins=(GOOD_ORIGIN,)) as worker:
        header = None if origin is None else Origin(origin)
        async with connect(ws_url(worker), origin=header, open_timeout=5) as ws:
            await ws.send(json.dumps({"op": "connect", "id": 1}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "reply"
        assert handshake_rejections(worker, "origin") == 0


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("https://evil.example", id="another-site"),
        pytest.param("http://ok.example", id="another-scheme"),
    ],
)
async def test_an_origin_outside_the_allowlist_is_refused_with_403_and_counted(
    origin: str,
) -> None:
    async with running_worker(origins=(GOOD_ORIGIN,)) as worker:
        await assert_handshake_refused(ws_url(worker), 403, origin=Origin(origin))
        assert handshake_rejections(worker, "origin") == 1
        assert len(worker.connections) == 0


async def test_a_connection_beyond_max_connections_gets_503_until_one_leaves() -> None:
    async with running_worker(max_connections=2) as worker:
        first, second = HeraldTestClient(ws_url(worker)), HeraldTestClient(ws_url(worker))
        await first.open()
        await second.open()
        try:
            await assert_handshake_refused(ws_url(worker), 503)
            assert handshake_rejections(worker, "capacity") == 1

            await first.close()
            await eventually(lambda: len(worker.connections) == 1)
            third = HeraldTestClient(ws_url(worker))
            assert (await third.open() or {}).get("type") == "reply"
            await third.close()
        finally:
            await first.close()
            await second.close()


# Plain HTTP paths


async def test_healthz_answers_200(worker: Worker) -> None:
    answer = await http_get(worker.port, "/healthz")
    assert (answer.status, answer.body) == (200, b"ok\n")


async def test_readyz_answers_200_while_the_bus_is_live(worker: Worker) -> None:
    answer = await http_get(worker.port, "/readyz")
    assert (answer.status, answer.body) == (200, b"ready\n")


async def test_readyz_answers_503_once_the_bus_is_closed(worker: Worker) -> None:
    await worker.bus.close()
    answer = await http_get(worker.port, "/readyz")
    assert (answer.status, answer.body) == (503, b"not ready\n")
    assert (await http_get(worker.port, "/healthz")).status == 200


async def test_readyz_answers_503_and_handshakes_get_503_while_draining() -> None:
    async with running_worker(drain_batch_interval_s=0.5) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        async with raw_connection(worker.port) as probe, raw_connection(worker.port) as late:
            draining = asyncio.ensure_future(worker.drain())
            await eventually(lambda: worker.state is WorkerState.DRAINING)

            ready = parse_http_answer(await probe.exchange(get_request("/readyz")))
            handshake = await late.read_http_head(upgrade_request())

            assert worker.state is WorkerState.DRAINING
            await draining
        await client.close()
    assert ready.status == 503
    assert handshake.status == 503
    assert handshake_rejections(worker, "draining") == 1


async def test_metrics_answers_prometheus_text_with_the_open_connections(worker: Worker) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        answer = await http_get(worker.port, "/metrics")
    finally:
        await client.close()
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"\nherald_connections_open 1.0\n" in answer.body


async def test_a_plain_get_on_the_websocket_path_is_refused_with_426_and_counted(
    worker: Worker,
) -> None:
    answer = await http_get(worker.port, "/ws")
    assert answer.status == 426
    assert handshake_rejections(worker, "bad_handshake") == 1
