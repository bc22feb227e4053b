"""The benchmark's peers work end to end: floor server, python-socketio and Socket.IO on
Node.js with the sharded Redis adapter (bench/peers/).

Each target is started through bench/targets.py on a real redis-server, three raw websocket
clients speak to it through the target's Adapter (the bytes the load engine would send),
publications go through the target's publisher, and every client's counts are checked.
Counts only, never timings. The Node peer needs node and npm (its packages are installed
by ``npm ci`` on first use): skipped without them on a developer's machine, failed under
``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Callable, Sequence

import pytest

from bench.loadgen.adapters import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Adapter, ClientState
from bench.peers.floor_adapter import FloorAdapter
from bench.peers.socketio_adapter import SocketIOAdapter
from bench.targets import get_target, socketio_node_message
from tests.support.client_js import fail_under_ci
from tests.support.raw_ws import RawConnection, client_frame, parse_http_answer
from tests.support.redis_server import RedisServer, free_port

SHARED = "question:1"
PUBLICATIONS = 5
DEADLINE_S = 5.0


class AdapterClient:
    """One websocket connection driven by an Adapter, as the load engine drives it."""

    def __init__(self, adapter: Adapter, channels: Sequence[str]) -> None:
        self.adapter = adapter
        self.state = ClientState(channels=channels)
        self.conn: RawConnection | None = None
        self.reading: asyncio.Task[None] | None = None

    async def open(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.conn = conn = RawConnection(reader, writer)
        writer.write(self.adapter.upgrade_request("127.0.0.1", port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        assert parse_http_answer(head).status == 101, head
        opening = self.adapter.open_messages(self.state.channels, None)
        await conn.send(*(client_frame(op, payload) for op, payload in opening))
        self.reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.conn is not None
        while True:
            opcode, payload = await self.conn.read_frame(timeout=30.0)
            if opcode == OP_CLOSE:
                return
            if opcode == OP_PING:
                await self.conn.send(client_frame(OP_PONG, payload))
                continue
            replies = self.adapter.on_message(self.state, opcode, payload, True)
            if replies:
                await self.conn.send(*(client_frame(op, p) for op, p in replies))

    async def close(self) -> None:
        if self.reading is not None:
            self.reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reading
        if self.conn is not None:
            self.conn.writer.close()
            with contextlib.suppress(Exception):
                await self.conn.writer.wait_closed()


async def _until(done: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"timed out: {what()}"
        await asyncio.sleep(0.02)


PEERS = [
    ("floor", 1), ("floor", 2), ("socketio", 1), ("socketio", 2),
    ("socketio-node", 1), ("socketio-node", 2),
]  # fmt: skip


@pytest.mark.redis
@pytest.mark.parametrize(("name", "workers"), PEERS)
async def test_peer_delivers_every_publication(
    redis_server: RedisServer, name: str, workers: int
) -> None:
    if name == "socketio-node" and (shutil.which("node") is None or shutil.which("npm") is None):
        fail_under_ci("node and npm are needed for the Socket.IO peer on Node.js")
    target = get_target(name)
    port = free_port()
    proc = target.start(port, redis_server.url, workers, timeout_s=20.0)
    clients = [AdapterClient(target.adapter, [SHARED, f"user:{i}"]) for i in range(3)]

    def counts() -> list[int]:
        return [c.state.publications for c in clients]

    try:
        await asyncio.gather(*(c.open(port) for c in clients))
        await _until(
            lambda: all(c.state.ready for c in clients),
            lambda: f"subscriptions confirmed {[c.state.subscribed for c in clients]}",
        )
        async with target.publisher(redis_server.url) as publisher:
            for n in range(PUBLICATIONS):
                await publisher.publish(SHARED, {"ts": time.time() * 1000, "n": n})
            await publisher.publish("user:1", {"ts": time.time() * 1000, "n": -1})
        expected = [PUBLICATIONS, PUBLICATIONS + 1, PUBLICATIONS]
        await _until(
            lambda: counts() == expected, lambda: f"publications {counts()}, expected {expected}"
        )
        await asyncio.sleep(0.1)  # nothing extra trickles in
        assert counts() == expected
        assert [len(c.state.latencies_ms) for c in clients] == expected
        assert all(c.state.subscribed == 2 for c in clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        code = target.stop(proc, timeout_s=10.0)
    assert code == 0, f"{name} did not exit cleanly on SIGTERM: {code}"


def test_socketio_adapter_speaks_engineio() -> None:
    adapter = SocketIOAdapter()
    state = ClientState(channels=["a", "b"])
    assert adapter.open_messages(["a", "b"], None) == [
        (OP_TEXT, b"40"),
        (OP_TEXT, b'420["subscribe","a"]'),
        (OP_TEXT, b'421["subscribe","b"]'),
    ]
    assert adapter.on_message(state, OP_TEXT, b"2", False) == [(OP_TEXT, b"3")]
    assert adapter.on_message(state, OP_TEXT, b'0{"sid":"x","pingInterval":25000}', False) == []
    assert adapter.on_message(state, OP_TEXT, b'40{"sid":"y"}', False) == []
    adapter.on_message(state, OP_TEXT, b'430["ok"]', False)
    adapter.on_message(state, OP_TEXT, b'431["ok"]', False)
    adapter.on_message(state, OP_TEXT, b'42["pub",{"ts":1.5,"n":1}]', True)
    assert (state.subscribed, state.publications, len(state.latencies_ms)) == (2, 1, 1)


def test_socketio_adapter_subscribes_once_connected_for_node() -> None:
    adapter = SocketIOAdapter(wait_for_connect=True)
    state = ClientState(channels=["a", "b"])
    assert adapter.open_messages(["a", "b"], None) == [(OP_TEXT, b"40")]
    assert adapter.on_message(state, OP_TEXT, b'0{"sid":"x","pingInterval":25000}', False) == []
    assert adapter.on_message(state, OP_TEXT, b'40{"sid":"y"}', False) == [
        (OP_TEXT, b'420["subscribe","a"]'),
        (OP_TEXT, b'421["subscribe","b"]'),
    ]
    assert adapter.on_message(state, OP_TEXT, b"2", False) == [(OP_TEXT, b"3")]
    adapter.on_message(state, OP_TEXT, b'430["ok"]', False)
    adapter.on_message(state, OP_TEXT, b'431["ok"]', False)
    assert state.ready


def test_socketio_node_message_is_the_sharded_adapters_broadcast() -> None:
    # What @socket.io/redis-adapter 8.3 (createShardedAdapter, socket.io 4.8) SPUBLISHed for
    # io.to("question:1").emit("pub", {ts: 1.5, n: 1}), captured with SSUBSCRIBE; only the
    # sender's uid differs (a server's random id there, the emitters' reserved one here).
    channel, body = socketio_node_message("question:1", {"ts": 1.5, "n": 1})
    assert channel == "socket.io#/#question:1#"
    captured = (
        '{"type":3,"data":{"packet":{"type":2,"data":["pub",{"ts":1.5,"n":1}]},'
        '"opts":{"rooms":["question:1"],"except":[],"flags":{}}},"uid":"0ed7e10e59b461b4",'
        '"nsp":"/"}'
    )
    assert json.loads(body) == {**json.loads(captured), "uid": "emitter"}
    assert body.startswith(b"{")  # the adapter decodes JSON when the first byte is "{"


def test_floor_adapter_counts() -> None:
    adapter = FloorAdapter()
    state = ClientState(channels=["a"])
    assert adapter.open_messages(["a"], None) == [(OP_TEXT, b"sub a")]
    assert adapter.on_message(state, OP_TEXT, b"ok a", False) == []
    payload = b'{"type":"pub","channel":"a","data":{"ts":1.5}}'
    adapter.on_message(state, OP_TEXT, payload, True)
    adapter.on_message(state, OP_TEXT, payload, False)
    assert (state.subscribed, state.publications, len(state.latencies_ms)) == (1, 2, 1)
