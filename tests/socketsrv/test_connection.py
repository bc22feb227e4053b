"""socketsrv/connection.py and websocket.py: the opening handshake, wire formats, lifecycle.

One real worker per test on a loopback port; clients are the ``websockets`` library or raw
TCP (tests/support/raw_ws.py) when a test needs what a well-behaved client never sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import ClientConnection as WebsocketClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request
from websockets.typing import Origin, Subprotocol

from socketsrv.connection import ClientConnection, ConnectionState
from socketsrv.errors import WrongState
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.opening import open_token
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient, assert_closed_with
from tests.support.raw_ws import (
    http_get,
)
from tests.support.waiting import eventually
from tests.support.worker import (
    disconnects_counted,
    handshake_rejections,
    publish,
    running_worker,
    ws_url,
)

GOOD_ORIGIN = "https://ok.example"


async def assert_handshake_refused(url: str, status: int, **options: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=5, **options):
            pass
    assert refused.value.response.status_code == status


async def receive_msgpack(ws: WebsocketClient) -> dict[str, Any]:
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
    epoch = pub.pop("epoch")  # offset 1 names its epoch (docs/protocol.md#recovery)
    assert isinstance(epoch, str) and epoch != "-"
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


# A plain GET where the websocket is


async def test_a_plain_get_on_the_websocket_path_is_refused_with_426_and_counted(
    worker: Worker,
) -> None:
    answer = await http_get(worker.port, "/ws")
    assert answer.status == 426
    assert handshake_rejections(worker, "bad_handshake") == 1


# Lifecycle


def unconnected(worker: Worker) -> ClientConnection:
    """A connection object as the worker makes one for a TCP accept, before any byte."""
    host = worker._host
    assert host is not None
    return ClientConnection(host)


@pytest.mark.parametrize(
    ("call", "action"),
    [
        pytest.param(lambda conn: conn.session, "use the session", id="session"),
        pytest.param(lambda conn: conn.push(b"\x81\x00"), "push a frame", id="push"),
        pytest.param(
            lambda conn: conn.close_with(CloseCode.RESTART), "close with a code", id="close_with"
        ),
    ],
)
async def test_a_connection_before_its_101_refuses_what_needs_a_websocket_naming_its_state(
    worker: Worker, call: Callable[[ClientConnection], object], action: str
) -> None:
    conn = unconnected(worker)
    assert conn.state is ConnectionState.CONNECTING
    with pytest.raises(WrongState, match=f"connection: cannot {action} in state connecting"):
        call(conn)


async def test_a_connection_goes_open_closing_closed_and_drops_frames_once_closing(
    worker: Worker,
) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        (conn,) = worker.connections
        assert conn.state is ConnectionState.OPEN
        conn.close_with(CloseCode.STATE_LOST)
        assert conn.state is ConnectionState.CLOSING
        conn.push(b"\x81\x00")  # a fan-out racing the close: dropped, not an error
        conn.close_with(CloseCode.RESTART)  # closed once: the first code stands
        reason = await assert_closed_with(client, 4003)
        assert re.fullmatch(r"state lost retry_ms=\d+", reason or ""), reason
        await eventually(lambda: conn.state is ConnectionState.CLOSED)
        assert worker.connections == set()
    finally:
        await client.close()
    assert disconnects_counted(worker, 4003) == 1
    assert disconnects_counted(worker, 4000) == 0


def requests_held_by(parser: object) -> list[Request]:
    """The upgrade requests the frames of a websockets parser generator (and the generators
    it delegates to) hold as locals."""
    held = []
    while parser is not None:
        frame = getattr(parser, "gi_frame", None)
        if frame is not None:
            held += [v for v in frame.f_locals.values() if isinstance(v, Request)]
        parser = getattr(parser, "gi_yieldfrom", None)
    return held


@pytest.mark.parametrize(
    "offered",
    [["herald.v1.json"], ["herald.v1.json", open_token([{"op": "connect", "id": 1}])]],
    ids=["connect_command_to_come", "fast_open"],
)
async def test_an_open_connection_keeps_nothing_of_its_upgrade_request(
    worker: Worker, offered: list[str]
) -> None:
    subprotocols = [Subprotocol(s) for s in offered]
    async with connect(ws_url(worker), subprotocols=subprotocols, open_timeout=5):
        await eventually(lambda: len(worker.connections) == 1)
        (conn,) = worker.connections
        held = requests_held_by(conn.ws.parser)
        assert held, "websockets no longer keeps the request: forget_request may go"
        assert [(r.path, list(r.headers.raw_items())) for r in held] == [("", [])]


async def test_each_connection_logs_one_debug_line_when_it_opens_and_one_when_it_closes(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="socketsrv.connection")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "socketsrv.connection"]

    by_client, by_server = HeraldTestClient(ws_url(worker)), HeraldTestClient(ws_url(worker))
    for client in (by_client, by_server):
        await client.open()
    peers = [f"127.0.0.1:{c.ws.local_address[1]}" for c in (by_client, by_server) if c.ws]
    try:
        await by_client.close()
        await eventually(lambda: len(worker.connections) == 1)  # the server saw it go
        (conn,) = worker.connections
        conn.close_with(CloseCode.STATE_LOST)
        await assert_closed_with(by_server, 4003)
        await eventually(lambda: sum(" closed: " in line for line in lines()) == 2)
    finally:
        await by_server.close()
    opened = [line for line in lines() if " opened: " in line]
    closed = [line for line in lines() if " closed: " in line]
    assert len(opened) == len(peers) == 2
    for line, peer in zip(opened, peers, strict=True):
        assert f"peer {peer}, herald.v1.json" in line
    assert f"peer {peers[0]}, code 1000 by the client" in closed[0]
    assert f"peer {peers[1]}, code 4003 by the server" in closed[1]
    assert all(
        r.levelno == logging.DEBUG for r in caplog.records if r.name == "socketsrv.connection"
    )


async def test_a_frame_queued_in_the_turn_the_client_ended_its_stream_is_dropped(
    worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        (conn,) = worker.connections
        conn.eof_received()  # as the transport calls it on the client's FIN, no close frame
        assert conn.state is ConnectionState.CLOSING
        conn.push(b"\x81\x03one")  # later in the same turn a fan-out reaches it: dropped
        await eventually(lambda: conn.state is ConnectionState.CLOSED)
        assert worker.connections == set()
    finally:
        await client.close()
    # Before, it stayed OPEN: the frame was queued for a transport that refuses writes
    # ("Cannot call write() after write_eof()", which once left the rest of the turn unwritten).
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
