"""The floor server: the least work per delivery that a Python websocket server can do.

    python -m bench.peers.floor --port P --redis-url URL [--workers N]

One uvloop event loop, one ``asyncio.Protocol`` per connection, a hand-rolled RFC 6455
handshake (no HTTP library, no websocket library) and one Redis pub/sub connection
subscribed to the pattern ``floor:*``. A message on ``floor:<channel>`` (payload: the JSON
bytes of the data) becomes ONE text frame ``{"type":"pub","channel":c,"data":<payload>}``,
built once, and the same bytes are given to ``transport.write`` of every connection
subscribed to the channel: no per-connection queue, no coalescing, no task, no timer.

Client protocol (text frames, masked as RFC 6455 requires): ``sub <channel>`` answered with
``ok <channel>``; ``ping`` answered with ``pong``. Websocket ping and close frames are
answered. ``GET /healthz`` answers 200; ``GET /stats`` answers a small JSON document.

The only other rule is the same slow-client bound as Herald's (``--outbox-max-bytes``, 4 MiB
by default, 0 for none): it costs nothing per delivery because the transport itself calls
``pause_writing`` when its buffer crosses the mark, and the connection is then aborted.

With ``--workers N`` (N > 1) this process supervises N copies of itself that listen on the
same port with SO_REUSEPORT (bench/peers/supervisor.py); each worker has its own Redis
subscription. "ready" is printed on stdout once every worker listens; SIGTERM (or SIGINT)
stops the workers and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from typing import Any, cast

from bench.peers.supervisor import parser, run_workers

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_REQUEST_BYTES = 8192
_MAX_CLIENT_FRAME_BYTES = 65536
_HANDSHAKE_TIMEOUT_S = 10.0
_CHANNEL_PREFIX = b"floor:"
_PATTERN = "floor:*"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame (FIN set)."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def unmask(key: bytes, data: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


def _http(status: str, body: bytes, content_type: bytes = b"text/plain") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n" + body
    )  # fmt: skip


class Channel:
    """The connections subscribed to one channel and the constant head of its frames."""

    __slots__ = ("head", "transports")

    def __init__(self, name: bytes) -> None:
        self.transports: set[asyncio.Transport] = set()
        quoted = json.dumps(name.decode("utf-8", "replace")).encode()
        self.head = b'{"type":"pub","channel":' + quoted + b',"data":'


class Hub:
    """Everything one worker shares: channels, live connections, counters."""

    def __init__(self, outbox_max_bytes: int) -> None:
        self.channels: dict[bytes, Channel] = {}
        self.connections: set[FloorConnection] = set()
        self.outbox_max_bytes = outbox_max_bytes
        self.publications = 0
        self.deliveries = 0
        self.slow_disconnects = 0
        self.all_gone = asyncio.Event()
        """Set when the last connection is lost (waited for at shutdown)."""

    def subscribe(self, name: bytes, transport: asyncio.Transport) -> None:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = Channel(name)
        channel.transports.add(transport)

    def unsubscribe(self, name: bytes, transport: asyncio.Transport) -> None:
        channel = self.channels.get(name)
        if channel is not None:
            channel.transports.discard(transport)
            if not channel.transports:
                del self.channels[name]

    def deliver(self, name: bytes, data: bytes) -> None:
        """The whole per-publication path: build one frame, write it to every subscriber."""
        self.publications += 1
        channel = self.channels.get(name)
        if channel is None:
            return
        transports = channel.transports
        payload = channel.head + data + b"}"
        n = len(payload)
        if n < 126:
            data_frame = bytes((0x81, n)) + payload
        elif n < 65536:
            data_frame = b"\x81\x7e" + n.to_bytes(2, "big") + payload
        else:
            data_frame = b"\x81\x7f" + n.to_bytes(8, "big") + payload
        # A transport over its buffer limit aborts on the next loop turn (pause_writing), so
        # the set does not change while it is walked.
        for transport in transports:
            transport.write(data_frame)
        self.deliveries += len(transports)

    def stats(self) -> dict[str, int]:
        return {
            "pid": os.getpid(),
            "connections": len(self.connections),
            "channels": len(self.channels),
            "subscriptions": sum(len(c.transports) for c in self.channels.values()),
            "publications": self.publications,
            "deliveries": self.deliveries,
            "slow_disconnects": self.slow_disconnects,
        }


class FloorConnection(asyncio.Protocol):
    """One client: HTTP upgrade, then masked client frames; no state beyond its channels."""

    __slots__ = ("buffer", "channels", "hub", "opened", "timer", "transport")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.opened = False
        self.channels: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = t = cast(asyncio.Transport, transport)
        self.hub.connections.add(self)
        limit = self.hub.outbox_max_bytes
        if limit:
            t.set_write_buffer_limits(high=limit)
        self.timer = asyncio.get_running_loop().call_later(_HANDSHAKE_TIMEOUT_S, t.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._leave()
        hub = self.hub
        hub.connections.discard(self)
        if not hub.connections:
            hub.all_gone.set()

    def pause_writing(self) -> None:
        # The client reads slower than publications arrive: cut it (Herald's 4001 "slow").
        # Not from inside write() itself: abort on the next loop turn.
        self.hub.slow_disconnects += 1
        if self.transport is not None:
            asyncio.get_running_loop().call_soon(self.transport.abort)

    def _leave(self) -> None:
        transport = self.transport
        if transport is not None:
            for name in self.channels:
                self.hub.unsubscribe(name, transport)
        self.channels = []

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        if not self.opened:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_REQUEST_BYTES:
                    self._http_reply("431 Request Header Fields Too Large", b"too large\n")
                else:
                    self.buffer = buf
                return
            self._on_request(buf[:end])
            buf = buf[end + 4 :]
            if not self.opened:
                self.buffer = b""
                return
        self.buffer = self._frames(buf)

    def _http_reply(self, status: str, body: bytes, content_type: bytes = b"text/plain") -> None:
        assert self.transport is not None
        self.transport.write(_http(status, body, content_type))
        self.transport.close()

    def _on_request(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[0] != b"GET":
            self._http_reply("405 Method Not Allowed", b"GET only\n")
            return
        path = parts[1].partition(b"?")[0]
        if path == b"/healthz":
            self._http_reply("200 OK", b"ok\n")
            return
        if path == b"/stats":
            body = json.dumps(self.hub.stats()).encode()
            self._http_reply("200 OK", body, b"application/json")
            return
        key = b""
        upgrade = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"sec-websocket-key":
                key = value.strip()
            elif name == b"upgrade":
                upgrade = value.strip().lower() == b"websocket"
        if not key or not upgrade:
            self._http_reply("426 Upgrade Required", b"websocket upgrade expected\n")
            return
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # RFC 6455 4.2.2
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.opened = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _frames(self, buf: bytes) -> bytes:
        """Handle every complete client frame in *buf*; return the incomplete rest."""
        i, n = 0, len(buf)
        while n - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - i < 4:
                    break
                length, head = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif length == 127:
                if n - i < 10:
                    break
                length, head = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            if not b1 & 0x80 or not b0 & 0x80 or length > _MAX_CLIENT_FRAME_BYTES:
                # Unmasked, fragmented or oversized: this floor only speaks small whole frames.
                self._close(1002 if not b1 & 0x80 else 1009)
                return b""
            end = i + head + 4 + length
            if end > n:
                break
            key = buf[i + head : i + head + 4]
            payload = unmask(key, buf[i + head + 4 : end])
            i = end
            if not self._on_frame(b0 & 0x0F, payload):
                return b""
        return buf[i:]

    def _on_frame(self, opcode: int, payload: bytes) -> bool:
        """Handle one client frame; False once the connection is closing."""
        transport = self.transport
        assert transport is not None
        if opcode == OP_TEXT:
            if payload.startswith(b"sub "):
                name = payload[4:]
                if name not in self.channels:
                    self.channels.append(name)
                    self.hub.subscribe(name, transport)
                transport.write(frame(OP_TEXT, b"ok " + name))
            elif payload == b"ping":
                transport.write(frame(OP_TEXT, b"pong"))
        elif opcode == OP_PING:
            transport.write(frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            self._leave()
            transport.write(frame(OP_CLOSE, payload[:2]))
            transport.close()
            return False
        elif opcode != OP_PONG:
            self._close(1003)
            return False
        return True

    def _close(self, code: int) -> None:
        self._leave()
        if self.transport is not None:
            self.transport.write(frame(OP_CLOSE, code.to_bytes(2, "big")))
            self.transport.close()


async def relay(hub: Hub, redis_url: str, subscribed: asyncio.Event) -> None:
    """One pub/sub connection: every ``floor:<channel>`` message goes to :meth:`Hub.deliver`.

    If the connection fails, it is opened again after a short pause (publications made in
    between are lost: the floor has no history); errors go to stderr.
    """
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    deliver = hub.deliver
    skip = len(_CHANNEL_PREFIX)
    while True:
        client = Redis.from_url(redis_url)
        pubsub = client.pubsub()
        try:
            await pubsub.psubscribe(_PATTERN)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "pmessage":
                    deliver(message["channel"][skip:], message["data"])
                elif kind == "psubscribe":
                    subscribed.set()  # also after redis-py resubscribed on a reconnect
        except (RedisError, OSError) as exc:
            print(f"floor: redis pub/sub: {exc!r}; reconnecting", file=sys.stderr, flush=True)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            with contextlib.suppress(Exception):
                await client.aclose()
        await asyncio.sleep(0.5)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(args.outbox_max_bytes)
    subscribed = asyncio.Event()
    relay_task = asyncio.ensure_future(relay(hub, args.redis_url, subscribed))
    server = await loop.create_server(
        lambda: FloorConnection(hub),
        host=args.host,
        port=args.port,
        reuse_port=args.reuse_port or None,
        backlog=4096,
    )
    for sock in server.sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # "ready" only once Redis confirmed the subscription: nothing published after it is lost.
    await asyncio.wait(
        [asyncio.ensure_future(subscribed.wait()), asyncio.ensure_future(stop.wait())],
        return_when=asyncio.FIRST_COMPLETED,
    )
    if not stop.is_set():
        print("ready", flush=True)
        await stop.wait()
    server.close()
    relay_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay_task
    # Going away (1001), then whatever has not closed within a second is cut.
    going_away = frame(OP_CLOSE, (1001).to_bytes(2, "big"))
    for conn in list(hub.connections):
        if conn.transport is not None and not conn.transport.is_closing():
            if conn.opened:
                conn.transport.write(going_away)
            conn.transport.close()
    if hub.connections:
        hub.all_gone.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.all_gone.wait(), 1.0)
    for conn in list(hub.connections):
        if conn.transport is not None:
            conn.transport.abort()
    await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m bench.peers.floor", __doc__)
    p.add_argument("--outbox-max-bytes", type=int, default=4 << 20)
    args = p.parse_args(argv)
    if args.workers > 1:
        child: list[Any] = [
            "--host", args.host, "--port", args.port, "--redis-url", args.redis_url,
            "--outbox-max-bytes", args.outbox_max_bytes,
        ]  # fmt: skip
        return run_workers("bench.peers.floor", [str(a) for a in child], args.workers)
    import uvloop

    uvloop.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
