"""One client connection: an asyncio protocol around websockets' sans-I/O ``ServerProtocol``.

There is no task and no timer per idle connection: bytes arrive in :meth:`data_received`,
frames go out through one :class:`WriteScheduler` per worker that coalesces everything
queued for a connection during one event-loop turn into a single ``transport.write``.
Deadlines (heartbeats, connect timeout, token expiry) are checked by the worker's shared
sweep (socketsrv/worker.py).

The outgoing buffer is bounded: the bytes queued here during one loop turn, and the bytes the
transport holds that the client has not read yet, may each not exceed ``outbox_max_bytes``
(the transport's high-water mark); past either the connection is closed with 4001 ("slow")
and the others are not delayed (docs/protocol.md#slow-clients).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol
from typing import cast

from websockets.datastructures import Headers
from websockets.exceptions import InvalidOrigin, NegotiationError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from herald_contract.bus import BusUnavailable
from herald_contract.channels import Channel
from herald_contract.envelope import StreamPosition
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.codes import CLOSE_TABLE, CloseCode, ErrorCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import (
    CloseWith,
    Effect,
    Limits,
    Send,
    Session,
    SessionState,
    StartSubscribe,
    StopSubscription,
)

log = logging.getLogger(__name__)
ws_log = logging.getLogger("socketsrv.ws")

_SUBPROTOCOLS = [Subprotocol(w.subprotocol) for w in WireFormat]


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    origins: Sequence[str] | None
    """Allowed Origin header values (a request without one is allowed); None: any."""
    max_frame_bytes: int
    outbox_max_bytes: int
    compression: bool
    close_timeout_s: float
    max_connections: int
    limits: Limits


class HttpHandler(TypingProtocol):
    def __call__(self, request: Request) -> Response | None:
        """A response for a plain HTTP path, or None to go on with the websocket handshake."""


class WriteScheduler:
    """Flushes every connection that queued frames, once per event-loop turn.

    This is the hot path of every delivery (docs/decisions.md): a connection appends itself
    to :attr:`dirty` when its first frame of the turn is queued, and :meth:`flush` writes
    each one's frames with a single ``transport.write``, without a call per connection.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics) -> None:
        self._loop = loop
        self._metrics = metrics
        self.dirty: list[ClientConnection] = []
        """Connections with queued frames; the same list object for the worker's lifetime."""

    def schedule(self) -> None:
        """Called when :attr:`dirty` gets its first connection of the turn."""
        self._loop.call_soon(self.flush)

    def flush(self) -> None:
        batch = self.dirty.copy()
        self.dirty.clear()
        written = 0
        for conn in batch:
            pending = conn._pending
            if not pending:
                continue  # flushed by the connection itself (a close) earlier in the turn
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if conn.closing:
                continue
            if len(data) > conn._outbox_max_bytes:
                conn.close_with(CloseCode.SLOW)
                continue
            conn.transport.write(data)  # type: ignore[union-attr]  # set before any push
            written += len(data)
        if written:
            self._metrics.bytes_written.inc(written)


@dataclass(slots=True)
class ConnectionHost:
    """What every connection of one worker shares."""

    config: ConnectionConfig
    hub: Hub
    metrics: Metrics
    verifier: TokenVerifier | None
    scheduler: WriteScheduler
    http: HttpHandler
    connections: set[ClientConnection]
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    accepting: bool = True
    next_id: int = 0
    transports: int = 0
    """TCP connections not yet lost, closing ones included (a drain waits for them)."""

    def new_client_id(self) -> str:
        self.next_id += 1
        return f"{id(self) & 0xFFFF:04x}-{self.next_id:x}"


class ClientConnection(asyncio.Protocol):
    """One websocket client (see the module docstring)."""

    __slots__ = (
        "_close_timer",
        "_compress",
        "_connect_timer",
        "_detached",
        "_dirty",
        "_fragments",
        "_fragments_text",
        "_outbox_max_bytes",
        "_pending",
        "_subscribing",
        "closing",
        "host",
        "session",
        "transport",
        "wire",
        "ws",
    )

    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        cfg = host.config
        self.ws = ServerProtocol(
            # No Origin header means no browser, so no cross-site hijacking to fear.
            origins=[*(Origin(o) for o in cfg.origins), None] if cfg.origins is not None else None,
            extensions=[ServerPerMessageDeflateFactory()] if cfg.compression else None,
            subprotocols=_SUBPROTOCOLS,
            select_subprotocol=_select_subprotocol,
            max_size=cfg.max_frame_bytes,
            logger=ws_log,
        )
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.wire = WireFormat.JSON
        self.closing = False
        self._pending: list[bytes] = []
        self._outbox_max_bytes = cfg.outbox_max_bytes
        self._compress = cfg.compression
        self._dirty = host.scheduler.dirty
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._close_timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._detached = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self._outbox_max_bytes)
        self.host.transports += 1
        # Until the connect command, one timer bounds the handshake and the connect (slowloris,
        # TLS sent to the plain port, a socket that never says who it is); then it is gone.
        self._connect_timer = asyncio.get_running_loop().call_later(
            self.host.config.limits.connect_timeout_s, self._connect_timed_out
        )

    def _connect_timed_out(self) -> None:
        # A timer runs before the loop polls for I/O: on a worker too busy to read sockets on
        # time (a reconnect storm), the connect command may be sitting unread in the socket.
        # Look again after one poll, so only a client that really said nothing is closed. Not
        # call_later(0): libuv would run it in this same timer phase, before the poll.
        self._connect_timer = asyncio.get_running_loop().call_later(0.001, self._connect_expired)

    def _connect_expired(self) -> None:
        self._connect_timer = None
        if self.session is None:
            if not self.ws.eof_sent:  # no complete HTTP request was ever answered
                self._rejected("timeout")
            self.abort()
        elif self.session.state is SessionState.AWAITING_CONNECT:
            self.close_with(CloseCode.CONNECT_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self._on_request(event)
            elif isinstance(event, Frame):
                self._on_frame(event)
        if not self.closing and self.ws.close_sent is not None:
            # The websocket layer failed the connection itself (1002, 1009, 1011).
            self.closing = True
            self.host.metrics.disconnects.labels(code=str(self.ws.close_sent.code)).inc()
        self._send_ws_output()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._send_ws_output()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.transports -= 1
        for timer in (self._close_timer, self._connect_timer):
            if timer is not None:
                timer.cancel()
        self.closing = True
        self._pending.clear()
        if self.ws.handshake_exc is not None and not self.ws.accept_called:
            self._rejected("bad_handshake")  # not HTTP at all: _on_request never saw it
        self._detach()

    # The opening handshake

    def _on_request(self, request: Request) -> None:
        host = self.host
        response = host.http(request)
        if response is not None:
            self.ws.send_response(response)
            return
        if not host.accepting:
            response = self.ws.reject(503, "Server restarting.\n")
            self._rejected("draining")
        elif len(host.connections) >= host.config.max_connections:
            response = self.ws.reject(503, "Too many connections on this worker.\n")
            self._rejected("capacity")
        else:
            response = self.ws.accept(request)
            if response.status_code != 101:
                exc = self.ws.handshake_exc
                reason = (
                    "origin"
                    if isinstance(exc, InvalidOrigin)
                    else "subprotocol"
                    if isinstance(exc, NegotiationError)
                    else "bad_handshake"
                )
                self._rejected(reason)
        self.ws.send_response(response)
        if response.status_code == 101:
            self._opened(response.headers.get("Sec-WebSocket-Protocol"))

    def _rejected(self, reason: str) -> None:
        self.host.metrics.handshake_rejections.labels(reason=reason).inc()

    def _opened(self, subprotocol: str | None) -> None:
        host = self.host
        self.wire = WireFormat(subprotocol) if subprotocol else WireFormat.JSON
        self.session = Session(
            client_id=host.new_client_id(),
            wire=self.wire,
            limits=host.config.limits,
            verifier=host.verifier,
            now=host.clock(),
        )
        host.connections.add(self)
        host.metrics.connections_open.inc()
        host.metrics.connections_accepted.inc()
        # The client has connect_timeout_s from the 101 (not from the TCP accept) to say who
        # it is: time a busy worker spent before answering is not the client's.
        if self._connect_timer is not None:
            self._connect_timer.cancel()
        self._connect_timer = asyncio.get_running_loop().call_later(
            host.config.limits.connect_timeout_s, self._connect_timed_out
        )

    # Incoming frames

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = bytes(frame.data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(data, opcode is Opcode.TEXT)
            else:
                self._fragments = [data]
                self._fragments_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(data)
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = None
                self._on_message(data, self._fragments_text)
        elif opcode is Opcode.CLOSE:
            self.closing = True
        elif self.session is not None:
            self.session.last_seen = self.host.clock()  # a ping or pong frame is a sign of life

    def _on_message(self, data: bytes, is_text: bool) -> None:
        session = self.session
        if session is None or self.closing:
            return
        payload: bytes | str = data
        if is_text:
            try:
                payload = data.decode()
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA)
                return
        try:
            effects = session.receive(payload, self.host.clock(), self.host.wall_clock())
        except Exception:
            # A bug below us must not escape data_received: asyncio would drop the TCP
            # connection with no close frame and nothing counted.
            log.exception("client %s: cannot handle a message", session.client_id)
            self.close_with(CloseCode.INTERNAL_ERROR)
            return
        self._apply(effects)
        if self._connect_timer is not None and session.state is SessionState.CONNECTED:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _apply(self, effects: list[Effect]) -> None:
        metrics = self.host.metrics
        for effect in effects:
            if isinstance(effect, Send):
                if effect.error is not None:
                    metrics.errors.labels(code=str(int(effect.error))).inc()
                self.push(effect.frame)
            elif isinstance(effect, StartSubscribe):
                metrics.commands.labels(op="subscribe").inc()
                self._start_subscribe(effect)
            elif isinstance(effect, StopSubscription):
                metrics.commands.labels(op="unsubscribe").inc()
                self._stop_subscription(effect.channel)
            elif isinstance(effect, CloseWith):
                self.close_with(effect.code)

    def _start_subscribe(self, effect: StartSubscribe) -> None:
        name = effect.channel.name
        task = asyncio.ensure_future(self._subscribe(effect))
        self._subscribing[name] = task
        task.add_done_callback(lambda t: self._subscribe_done(name, t))

    async def _subscribe(self, effect: StartSubscribe) -> None:
        session = self.session
        assert session is not None

        def on_subscribed(position: StreamPosition, recovery: str) -> None:
            self.push(session.subscribed(effect.request_id, position, recovery).frame)

        try:
            await self.host.hub.subscribe(self, effect.channel.name, effect.since, on_subscribed)
        except BusUnavailable as exc:
            log.info("subscribe to %s refused: %s", effect.channel.name, exc.why)
            self._reply_failed(effect.request_id, effect.channel, ErrorCode.UNAVAILABLE)

    def _reply_failed(self, request_id: int, channel: Channel, code: ErrorCode) -> None:
        assert self.session is not None
        self.host.metrics.errors.labels(code=str(int(code))).inc()
        self.push(self.session.subscribe_failed(request_id, channel, code).frame)

    def _subscribe_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._subscribing.get(name) is task:
            del self._subscribing[name]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("subscribe to %s failed", name, exc_info=exc)
            self.close_with(CloseCode.INTERNAL_ERROR)

    def _stop_subscription(self, channel: Channel) -> None:
        task = self._subscribing.pop(channel.name, None)
        if task is not None:
            task.cancel()
        self.host.hub.unsubscribe(self, channel.name)

    # Outgoing frames (hub.Subscriber)

    def push(self, frame: bytes) -> None:
        """Queue one complete frame; close with 4001 if the bound is passed. Never re-enters
        the hub: detaching happens on a later loop turn."""
        if self.closing:
            return
        if self._compress:
            frame = self._recompress(frame)
        pending = self._pending
        if not pending:
            dirty = self._dirty
            if not dirty:
                self.host.scheduler.schedule()
            dirty.append(self)
        pending.append(frame)

    def flush(self) -> int:
        """Write everything queued in one call now (a close); return the bytes written."""
        pending = self._pending
        transport = self.transport
        if not pending or transport is None or transport.is_closing():
            pending.clear()
            return 0
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        transport.write(data)  # past outbox_max_bytes buffered, the transport calls pause_writing
        return len(data)

    def pause_writing(self) -> None:
        """The transport holds more than ``outbox_max_bytes`` the client has not read: slow.

        Called from inside ``transport.write``; the close happens on the next loop turn."""
        asyncio.get_running_loop().call_soon(self.close_with, CloseCode.SLOW)

    def _recompress(self, frame: bytes) -> bytes:
        """With permessage-deflate, let the websocket protocol frame (and compress) the payload."""
        length = frame[1] & 0x7F
        start = 2 if length < 126 else 4 if length == 126 else 10
        if frame[0] & 0x0F == Opcode.TEXT:
            self.ws.send_text(frame[start:])
        else:
            self.ws.send_binary(frame[start:])
        return b"".join(self.ws.data_to_send())

    def close_with(self, code: CloseCode, reason: str | None = None) -> None:
        """Start the closing handshake with *code*; idempotent; never blocks."""
        if self.closing:
            return
        self.closing = True
        if code is CloseCode.SLOW:
            self._pending.clear()  # what a slow client has not read, it will recover
        else:
            self.flush()
        self.host.metrics.disconnects.labels(code=str(int(code))).inc()
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason or CLOSE_TABLE[code].reason)
        self._send_ws_output()
        asyncio.get_running_loop().call_soon(self._detach)

    def _fail(self, code: CloseCode) -> None:
        self.host.metrics.disconnects.labels(code=str(int(code))).inc()
        self.closing = True
        self.ws.fail(code, CLOSE_TABLE[code].reason)

    # Plumbing

    def _send_ws_output(self) -> None:
        transport = self.transport
        if transport is None:
            return
        out = self.ws.data_to_send()
        if out:
            self.flush()  # keep our frames ahead of a close frame
            for data in out:
                if data:
                    transport.write(data)
                elif transport.can_write_eof():
                    transport.write_eof()
        if self.ws.close_expected() and self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(
                self.host.config.close_timeout_s, self.abort
            )
        if self.ws.state is State.CLOSED:
            transport.close()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    def _detach(self) -> None:
        if self._detached:
            return
        self._detached = True
        for task in self._subscribing.values():
            task.cancel()
        self._subscribing.clear()
        session = self.session
        if session is None:
            return
        self.host.hub.remove(self, session.subscriptions)
        session.closed()
        self.host.connections.discard(self)
        self.host.metrics.connections_open.dec()


def _select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The first Herald subprotocol the client offers; JSON when it offers none."""
    if not offered:
        return None
    for name in offered:
        if name in _SUBPROTOCOLS:
            return name
    raise NegotiationError("expected one of " + ", ".join(_SUBPROTOCOLS))


def http_response(status: int, body: bytes, content_type: str) -> Response:
    """A plain HTTP response for the health and metrics paths."""
    import http as _http

    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status, _http.HTTPStatus(status).phrase, headers, body)
