"""One load-generator client: a logical :class:`Slot` and its websocket connections.

A connection is a plain :class:`asyncio.Protocol`: it writes the adapter's upgrade request,
parses the 101 response, then parses server frames (unmasked; a read may hold a partial frame
or several frames), masks its own frames (RFC 6455 5.3) and hands each complete message to
the adapter (bench/loadgen/adapters.py). No websockets library on this side: the load
generator must stay cheaper than the servers it measures.

The counters a client moves (open, ready, messages, closes, failures) belong to its
:class:`~bench.loadgen.process.LoadProcess`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from bench.loadgen.adapters import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ClientState,
    Message,
)
from tests.support.raw_ws import client_frame

if TYPE_CHECKING:
    from bench.loadgen.process import LoadProcess

_OP_CONT = 0x0
_CRLF2 = b"\r\n\r\n"
_MAX_RESPONSE_HEAD = 65536

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def connect(
    loop: asyncio.AbstractEventLoop,
    protocol: asyncio.Protocol,
    host: str,
    port: int,
    source: str,
    timeout_s: float | None = None,
) -> None:
    """Connect *protocol* from loopback address *source* to host:port, the TCP connect
    within *timeout_s* (TimeoutError past it; None: no bound).

    The socket is bound to *source* with ``IP_BIND_ADDRESS_NO_PORT`` (Linux 4.2+), so the
    kernel picks the port at connect time for the 4-tuple. A plain bind to port 0 searches
    the whole port range for a port no socket on *source* uses: measured here, 6 us per bind
    up to 12,000 sockets on one address, then 0.8 ms, then 2.7 ms past 15,000: the load
    generator itself would slow every open and every reconnect storm.

    The timeout bounds only the TCP connect. ``create_connection`` on the connected socket is
    never cancelled: uvloop closes a transport whose creation is cancelled after it called
    ``connection_made`` without ever calling ``connection_lost`` (measured: 50 of 1,800
    cancelled creations), leaving a client that believes itself connected. A cancellation
    that comes meanwhile (the storm's deadline) aborts the transport once it exists.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    making = asyncio.ensure_future(loop.create_connection(lambda: protocol, sock=sock))
    try:
        await asyncio.shield(making)
    except asyncio.CancelledError:
        making.add_done_callback(_abort_when_made)
        raise


def _abort_when_made(making: asyncio.Task[tuple[asyncio.Transport, asyncio.Protocol]]) -> None:
    """A connection whose caller gave up while it was being made: closed as soon as it is."""
    if not making.cancelled() and making.exception() is None:
        transport, protocol = making.result()
        if isinstance(protocol, Client):
            protocol.closing = True  # its caller's decision, not a loss
        transport.abort()


class Slot:
    """One logical client: its channels and state survive reconnects (new sockets)."""

    __slots__ = ("conn", "ever_ready", "probe", "ready", "state")

    def __init__(self, channels: Sequence[str], probe: bool) -> None:
        self.state = ClientState(channels=channels)
        self.probe = probe
        self.conn: Client | None = None
        self.ready = False
        self.ever_ready = False
        """Ready at some point since the last reset (a client that never was cannot have
        been sent anything: verify counts what it missed apart)."""


class Client(asyncio.Protocol):
    """One websocket connection of a :class:`Slot` (see the module docstring)."""

    __slots__ = (
        "buf",
        "close_reason",
        "closing",
        "frags",
        "lost",
        "on_done",
        "opened",
        "proc",
        "slot",
        "transport",
        "upgraded",
    )

    def __init__(self, proc: LoadProcess, slot: Slot) -> None:
        self.proc = proc
        self.slot = slot
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.opened = False
        self.closing = False
        self.lost = False
        self.close_reason = ""
        """The reason of the server's close frame, if one came (its ``retry_ms`` hint)."""
        self.frags: list[bytes] | None = None
        self.on_done: Callable[[bool], None] | None = None
        """Called once with True (ready) or False (failed); releases the caller's slot."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = t = cast(asyncio.Transport, transport)
        proc = self.proc
        fast = proc.fast
        if fast is None:
            t.write(proc.upgrade)
        else:
            state = self.slot.state
            t.write(fast.open_request(*proc.target, state.channels, state.positions or None))

    def settle(self, ok: bool) -> None:
        done, self.on_done = self.on_done, None
        if done is not None:
            done(ok)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            rest = self._upgrade(data)
            if rest is None:
                return
            data = rest
        n = len(data)
        i = 0
        slot = self.slot
        state = slot.state
        on_message = self.proc.adapter.on_message
        probe = slot.probe
        count = 0
        while i + 2 <= n:
            b0 = data[i]
            length = data[i + 1] & 0x7F
            start = i + 2
            if length == 126:
                if i + 4 > n:
                    break
                length = (data[i + 2] << 8) | data[i + 3]
                start = i + 4
            elif length == 127:
                if i + 10 > n:
                    break
                length = int.from_bytes(data[i + 2 : i + 10], "big")
                start = i + 10
            stop = start + length
            if stop > n:
                break
            i = stop
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode in (OP_TEXT, OP_BINARY):
                count += 1
                replies = on_message(state, opcode, data[start:stop], probe)
                if replies:
                    self.send_all(replies)
                if not slot.ready and state.subscribed >= len(state.channels):
                    self.proc.mark_ready(self)
            else:
                self.on_other_frame(b0, opcode, data[start:stop])
                if self.transport is None:
                    break
        self.proc.messages += count
        if i < n and self.transport is not None:
            self.buf = data[i:]

    def _upgrade(self, data: bytes) -> bytes | None:
        """Parse the response to the upgrade request; the bytes after it once it is a 101,
        None while it is incomplete or when it refused the upgrade."""
        end = data.find(_CRLF2)
        if end < 0:
            if len(data) > _MAX_RESPONSE_HEAD:
                self.fail_handshake(b"oversized")
            else:
                self.buf = data
            return None
        if not data.startswith(b"HTTP/1.1 101"):
            self.fail_handshake(data[9:12])
            return None
        self.upgraded = True
        self.opened = True
        self.proc.open_count += 1
        slot = self.slot
        if self.proc.fast is None:  # else they came with the upgrade request
            positions = slot.state.positions or None
            self.send_all(self.proc.adapter.open_messages(slot.state.channels, positions))
        if not slot.state.channels:
            self.proc.mark_ready(self)
        return data[end + 4 :]

    def on_other_frame(self, b0: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):  # first fragment
            self.frags = [bytes((opcode,)), payload]
        elif opcode == _OP_CONT and self.frags is not None:
            self.frags.append(payload)
            if b0 & 0x80:
                frags, self.frags = self.frags, None
                slot = self.slot
                replies = self.proc.adapter.on_message(
                    slot.state, frags[0][0], b"".join(frags[1:]), slot.probe
                )
                if replies:
                    self.send_all(replies)
                if not slot.ready and slot.state.subscribed >= len(slot.state.channels):
                    self.proc.mark_ready(self)
        elif opcode == OP_PING:
            self.send_all([(OP_PONG, payload)])
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.proc.closes[code] += 1
            self.close_reason = payload[2:].decode("utf-8", "replace")
            if not self.closing:
                self.closing = True
                self.send_all([(OP_CLOSE, payload[:2])])
            # The server closes TCP after the closing handshake (RFC 6455 7.1.1), so its side
            # keeps the TIME_WAIT and the client ports are free again at once.

    def send_all(self, messages: list[Message]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(messages) == 1:
            transport.write(client_frame(*messages[0]))
        else:
            transport.write(b"".join(client_frame(op, payload) for op, payload in messages))

    def fail_handshake(self, status: bytes) -> None:
        self.proc.handshake_failures[status.decode("ascii", "replace")] += 1
        self.settle(False)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Start the closing handshake (1000); abort if the socket never opened."""
        transport = self.transport
        if transport is None or self.lost:
            return
        if self.upgraded and not self.closing:
            self.closing = True
            self.send_all([(OP_CLOSE, (1000).to_bytes(2, "big"))])
        elif not self.upgraded:
            transport.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        proc = self.proc
        if self.opened:
            proc.open_count -= 1
        slot = self.slot
        if slot.conn is self:
            if slot.ready:
                slot.ready = False
                proc.ready_count -= 1
            if not self.closing:
                proc.lost_unexpectedly += 1
        self.settle(False)
        self.transport = None
        proc.on_lost(self)
