"""One client connection: its lifecycle, and what its protocol session decides, carried out.

An asyncio protocol around websockets' sans-I/O ``ServerProtocol``. The parts with a job of
their own live beside it: the websocket layer (handshake answer, fragments, compression) in
socketsrv/websocket.py, write scheduling in socketsrv/writes.py, the plain HTTP paths in
socketsrv/endpoints.py, heartbeats and deadlines in the worker's sweep (socketsrv/sweep.py),
what all connections of a worker share in socketsrv/host.py.
There is no task and no timer per idle connection.

Lifecycle (:class:`ConnectionState`)::

    CONNECTING --101--> OPEN --close_with / close frame / failure / the client's EOF--> CLOSING
        |                 |                                                      |
        +-----------------+---------- TCP lost, or detached after a close -----> CLOSED

A method called in a state that forbids it raises :class:`socketsrv.errors.WrongState`.

The outgoing buffer is bounded: the bytes queued here during one loop turn, and the bytes the
transport holds that the client has not read yet, may each not exceed ``outbox_max_bytes``
(the transport's high-water mark); past either the connection is closed with 4001 ("slow")
and the others are not delayed (docs/protocol.md#slow-clients).

A replay is paced to what the client drains (socketsrv/recovery.py): it may queue only while
the connection holds less than its replay mark (``outbox_max_bytes / 16``) unsent. A replay
waiting for room lowers the transport's high-water mark to the replay mark, so that the
transport tells (``resume_writing``) when the client has read it down to half of it; then
the bound is ``outbox_max_bytes`` again.

Conflation (issue 12, item 2; docs/protocol.md#conflation): once the transport holds more than
``conflate_mark_bytes`` unsent, the connection is *congested*: frames are held in its own queue
(socketsrv/outbox.py) rather than handed to the transport, where a newer publication with the
same conflation key supersedes a held one. The queue's head goes to the transport only when the
transport is empty (its marks are 0 meanwhile, so that ``resume_writing`` says so), at most
:data:`CONGESTED_LOWAT_BYTES` at a time, and the socket's ``TCP_NOTSENT_LOWAT`` is lowered to
that much too: what waits ahead of a new frame outside the queue, where nothing can be
conflated any more, is then about two KiB in the worker and the kernel plus the client's own
receive window. Once the kernel has taken every write for :data:`CALM_S` and the queue is
empty, the connection is no longer congested and its ``send_lowat_bytes`` is restored. The
bound is what the transport and the queue hold together.
``send_lowat_bytes`` (``TCP_NOTSENT_LOWAT``) keeps the kernel from taking megabytes a slow
client has not read, so that the backlog is here, where it can be bounded and conflated.

A heartbeat (sent by the sweep, :meth:`ClientConnection.send_heartbeat`) goes ahead of the
held frames. While it is unanswered past ``pong_timeout_s``, :meth:`reading_toward_heartbeat`
tells the sweep whether the client is still reading its way to it (its TCP acknowledged more
bytes since the last look, and not yet the heartbeat's last byte): such a client is slow, not
dead, and its deadline runs again (docs/protocol.md#heartbeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import socket
import struct
from typing import cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from herald_contract.bus import BusUnavailable
from herald_contract.channels import Channel
from herald_contract.envelope import StreamPosition
from socketsrv.admission import Verdict
from socketsrv.errors import WrongState
from socketsrv.host import ConnectionConfig, ConnectionHost
from socketsrv.hub import ChannelLimit, OnSubscribed
from socketsrv.outbox import HeldFrames
from socketsrv.protocol.budget import AddressBudget
from socketsrv.protocol.codes import CLOSE_TABLE, CloseCode, ErrorCode, close_reason
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.opening import BadOpen
from socketsrv.protocol.session import (
    CloseWith,
    CountTelemetry,
    Effect,
    Recovery,
    Send,
    Session,
    SessionState,
    StartSubscribe,
    StopSubscription,
)
from socketsrv.proxy_protocol import MAX_HEADER_BYTES, ProxyHeaderError, parse_proxy_header
from socketsrv.telemetry import count_telemetry
from socketsrv.websocket import (
    Fragments,
    Refusal,
    answer_handshake,
    close_of,
    forget_request,
    offered_commands,
    reframe,
    reject_open,
    server_protocol,
    wire_of,
)
from socketsrv.writes import WriteScheduler

__all__ = ["ClientConnection", "ConnectionConfig", "ConnectionHost", "ConnectionState"]
__all__ += ["WriteScheduler"]  # where benchmarks built it from before it had its own module

log = logging.getLogger(__name__)
ws_log = logging.getLogger("socketsrv.ws")

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux 3.12, macOS
TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
TCP_INFO_BYTES_ACKED = struct.Struct("=Q")
"""``tcpi_bytes_acked`` of Linux's ``struct tcp_info`` (4.1+), at byte 120."""
TCP_INFO_BYTES_ACKED_AT = 120

CONGESTED_LOWAT_BYTES = 1024
"""A congested connection's ``TCP_NOTSENT_LOWAT`` (when ``send_lowat_bytes`` is set) and the
most of its queue it hands the transport at a time: the bytes ahead of a new frame that can no
longer be conflated (bench/results/CONFLATION.md: with the 16 KiB of ``send_lowat_bytes`` and a
16 KiB hand-over, 2 KiB/s readers were ~37 KB behind and missed their heartbeats)."""
CALM_S = 2.0
"""A congested connection is so until the kernel has taken every write for this long and its
queue is empty: a slow reader is refused a write about every CONGESTED_LOWAT_BYTES it reads
(every 0.5 s at 2 KiB/s); giving it back 16 KiB of ``TCP_NOTSENT_LOWAT`` on a pause would put
16 KiB of unconflated frames ahead of it again."""

BUSY_RETRY_AFTER_S = 1.0
"""The ``Retry-After`` of a 503 when ``handshake_queue`` requests already wait."""

REPLAY_MARK_DIVISOR = 16
"""A paced replay queues only while the connection holds less than ``outbox_max_bytes`` / 16
unsent (64 KiB by default): a replay never takes much of the room live frames need."""


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    """TCP accepted; no 101 sent yet (a plain HTTP request ends here too)."""
    OPEN = "open"
    """The websocket is open, the session runs, the worker counts the connection."""
    CLOSING = "closing"
    """The closing handshake started; frames pushed now are dropped."""
    CLOSED = "closed"
    """Forgotten by the hub and the worker; only the TCP teardown is left."""


_OPEN = ConnectionState.OPEN
_NEXT: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.CONNECTING: frozenset({ConnectionState.OPEN, ConnectionState.CLOSED}),
    ConnectionState.OPEN: frozenset({ConnectionState.CLOSING, ConnectionState.CLOSED}),
    ConnectionState.CLOSING: frozenset({ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset(),
}


class ClientConnection(asyncio.Protocol):
    """One websocket client (see the module docstring)."""

    __slots__ = (
        "_acked_seen",
        "_address_subs",
        "_calm_timer",
        "_close_timer",
        "_compress",
        "_conflate_mark",
        "_connect_timer",
        "_drain_waiters",
        "_early",
        "_early_bytes",
        "_feed_bytes",
        "_feed_due",
        "_fragments",
        "_gate",
        "_gate_reply_at",
        "_hb_behind",
        "_hb_end",
        "_hb_held",
        "_head",
        "_held",
        "_opening",
        "_outbox_max_bytes",
        "_peer",
        "_pending",
        "_proxy_buf",
        "_refused_at",
        "_replay_mark",
        "_scheduler",
        "_session",
        "_subscribing",
        "_turn",
        "_waiting_request",
        "_written",
        "address",
        "host",
        "state",
        "transport",
        "wire",
        "ws",
    )

    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        cfg = host.config
        self.ws = server_protocol(
            origins=cfg.origins,
            compression=cfg.compression,
            max_frame_bytes=cfg.max_frame_bytes,
            logger=ws_log,
        )
        self.state = ConnectionState.CONNECTING
        self.transport: asyncio.Transport | None = None
        self.wire = WireFormat.JSON
        self._session: Session | None = None
        self._pending: list[bytes] = []
        self._outbox_max_bytes = cfg.outbox_max_bytes
        self._replay_mark = max(1, cfg.outbox_max_bytes // REPLAY_MARK_DIVISOR)
        self._drain_waiters: list[asyncio.Future[None]] = []
        """Paced replays waiting for the client to read (the transport's mark is lowered)."""
        mark = cfg.conflate_mark_bytes
        self._conflate_mark = (
            max(0, mark - cfg.send_lowat_bytes) if mark and not cfg.compression else None
        )
        """Congested past this many bytes in the transport: what it holds plus the
        ``send_lowat_bytes`` the kernel holds unsent once it refuses a write is past
        ``conflate_mark_bytes``. None: never conflate (off, or frames compressed as they
        are pushed)."""
        self._held: HeldFrames | None = None
        """Frames held back while congested (past the conflation mark; outbox.py)."""
        self._gate: list[bytes] | None = None
        """Frames held back while the connect reply waits for the server-side subscriptions
        (Session.connect_pending): written behind it, in one write. Also from the 101 of a
        fast open until its commands are answered (_fast_open)."""
        self._gate_reply_at = 0
        """Where in the held frames the connect reply goes once complete (after a delivery
        frame sent ahead of it)."""
        self._head: bytes | None = None
        """A fast open's 101, held until its commands are answered: then it goes first."""
        self._opening: set[int] | None = None
        """A fast open's subscribes not answered yet (request ids); None: not opening."""
        self._turn = False
        """It holds a place among the handshakes in flight (socketsrv/admission.py)."""
        self._waiting_request: Request | None = None
        """Its upgrade request, while it waits for a turn."""
        self._early: list[Frame | bytes] | None = None
        """What the client sent while its request waited for a turn."""
        self._early_bytes = 0
        self._feed_bytes = min(mark, CONGESTED_LOWAT_BYTES) if mark else 0
        self._feed_due = False
        """A feed of the held frames is scheduled for the end of the turn."""
        self._refused_at = 0.0
        self._calm_timer: asyncio.TimerHandle | None = None
        """While congested with nothing held: when to look whether it has caught up."""
        """The loop time the kernel last left a write in the transport while congested."""
        self._written = 0
        """Bytes handed to the transport: the position in the TCP stream of what is next."""
        self._hb_end: int | None = None
        """The stream position just past the last heartbeat (None: still held)."""
        self._hb_held = False
        """The last heartbeat is at the head of the held frames, not yet written."""
        self._hb_behind = False
        """The last heartbeat was queued behind a backlog (congested, or the transport not
        empty), or a look found it not yet acknowledged past its deadline."""
        self._acked_seen: int | None = None
        """The client's TCP acknowledged bytes when last looked at (reading_toward_heartbeat)."""
        self._compress = cfg.compression
        self._scheduler = host.scheduler
        self._fragments: Fragments | None = None
        self._subscribing: dict[str, tuple[asyncio.Task[None], StartSubscribe]] = {}
        self._close_timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._peer: str | None = None
        """Who is at the other end, for the debug log lines only (None when not logging)."""
        self.address = ""
        """The client's address: the TCP peer's, or the one a PROXY header or a trusted
        proxy's X-Forwarded-For names; what the per-address limits count."""
        self._proxy_buf: bytearray | None = bytearray() if cfg.proxy_protocol else None
        self._address_subs: set[str] = set()
        """The subscriptions charged to the address (pending ones included)."""

    @property
    def session(self) -> Session:
        """The protocol session; it exists from the 101 on (raises WrongState before)."""
        if self._session is None:
            raise WrongState("connection", "use the session", self.state)
        return self._session

    def _move(self, to: ConnectionState, action: str) -> None:
        if to not in _NEXT[self.state]:
            raise WrongState("connection", action, self.state)
        self.state = to
        if self._drain_waiters:
            self._wake_replays()  # no longer open: its paced replays end

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self._outbox_max_bytes)
        lowat = self.host.config.send_lowat_bytes
        sock = self.transport.get_extra_info("socket") if lowat else None
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (a Unix socket in tests): no limit
                sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, lowat)
        self.host.transports += 1
        if not self.host.admits_transport():
            # Past RLIMIT_NOFILE minus fd_reserve: what is left is for the listener, the bus
            # and the health checks (issue 11, item 9).
            self._rejected("descriptors")
            self.transport.abort()
            return
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.address = str(peer[0])
        # Until the connect command, one timer bounds the handshake and the connect (slowloris,
        # TLS sent to the plain port, a socket that never says who it is); then it is gone.
        self._arm_connect_timer()

    def data_received(self, data: bytes) -> None:
        if self._waiting_request is not None:
            self._hold_early([data])
            return
        if self._proxy_buf is not None:
            rest = self._proxy_header(data)
            if not rest:
                return
            data = rest
        self.ws.receive_data(data)
        events = iter(self.ws.events_received())
        for event in events:
            if isinstance(event, Request):
                self._on_request(event)
                if self.waiting_for_turn():
                    # Sent with the request (pipelined): read after its turn.
                    self._hold_early([e for e in events if isinstance(e, Frame)])
                    return
            elif isinstance(event, Frame):
                self._on_frame(event)
        self._after_frames()

    def _after_frames(self) -> None:
        if self.state is _OPEN and self.ws.close_sent is not None:
            # The websocket layer failed the connection itself (1002, 1009, 1011).
            self._move(ConnectionState.CLOSING, "fail")
            self.host.metrics.disconnects.labels(code=str(self.ws.close_sent.code)).inc()
        self._send_ws_output()

    def eof_received(self) -> bool | None:
        if self._waiting_request is not None:
            return None  # it left while waiting for a turn: the transport closes, and _detach
        self.ws.receive_eof()
        if self.state is _OPEN:
            # The client's end of stream without a close frame: the websocket layer ends
            # the stream and closes the transport now, before connection_lost. A frame
            # queued later in this turn (a fan-out) is dropped, not written after the EOF.
            self._move(ConnectionState.CLOSING, "receive the end of the stream")
        self._send_ws_output()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.transports -= 1
        for timer in (self._close_timer, self._connect_timer, self._calm_timer):
            if timer is not None:
                timer.cancel()
        self._pending.clear()
        self._held = None
        if self.ws.handshake_exc is not None and not self.ws.accept_called:
            self._rejected("bad_handshake")  # not HTTP at all: _on_request never saw it
        if self._session is not None and log.isEnabledFor(logging.DEBUG):
            self._log_closed()
        self._detach()

    # The opening handshake and the connect deadline

    def _proxy_header(self, data: bytes) -> bytes:
        """Read the PROXY header off the start of the stream; what follows it."""
        buf = self._proxy_buf
        assert buf is not None
        buf += data
        try:
            parsed = parse_proxy_header(bytes(buf))
        except ProxyHeaderError as exc:
            parsed, why = None, str(exc)
        else:
            why = "v2 header too long" if parsed is None and len(buf) > MAX_HEADER_BYTES else ""
        if why:
            log.debug("dropped a connection without a valid PROXY header: %s", why)
            self._proxy_buf = None
            self._rejected("proxy_header")
            self.abort()
            return b""
        if parsed is None:
            return b""  # more to come (the connect timer bounds the wait)
        address, length = parsed
        if address is not None:
            self.address = address
        self._proxy_buf = None
        return bytes(buf[length:])

    def _client_address(self, request: Request) -> str:
        """The address the limits count: behind a trusted proxy, the rightmost address of
        X-Forwarded-For that is not a trusted proxy itself (the entries left of it are the
        client's to write, so never believed)."""
        trusted = self.host.config.trusted_proxies
        if self.address not in trusted:
            return self.address
        hops = [h.strip() for v in request.headers.get_all("X-Forwarded-For") for h in v.split(",")]
        for hop in reversed(hops):
            if hop in trusted:
                continue
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                break
        return self.address

    def _on_request(self, request: Request) -> None:
        self._answer(request)
        if self._waiting_request is not request:
            forget_request(request)

    def _answer(self, request: Request) -> None:
        host = self.host
        response = host.http(request)
        if response is not None:
            self.ws.send_response(response)
            return
        busy = False
        if not self._turn and host.accepting:
            assert host.admission is not None  # built with the host
            verdict = host.admission.enter(self)
            if verdict is Verdict.WAIT:
                self._wait_for_turn(request)
                return
            self._turn = verdict is Verdict.GO
            busy = verdict is Verdict.FULL
        refusal = None
        retry_after_s = None
        budget = None
        commands = None
        if not host.accepting:
            refusal = Refusal.DRAINING
        elif busy:
            refusal = Refusal.BUSY
            retry_after_s = BUSY_RETRY_AFTER_S
        elif len(host.connections) >= host.config.max_connections:
            refusal = Refusal.CAPACITY
        else:
            self.address = self._client_address(request)
            budget = host.address_budget(self.address)  # None: exempt
            if budget is not None:
                now = host.clock()
                held = host.address_connections.get(self.address, 0)
                if held >= host.config.max_connections_per_address:
                    refusal = Refusal.ADDRESS
                elif not budget.connections.has(1, now):
                    refusal = Refusal.ADDRESS_RATE
                    retry_after_s = budget.connections.seconds_until(1, now)
        if refusal is None:
            try:
                commands = offered_commands(request)
            except BadOpen as bad:
                self._rejected("open")
                self.ws.send_response(reject_open(self.ws, bad))
                return
        response, rejected = answer_handshake(self.ws, request, refusal, retry_after_s)
        if rejected is not None:
            self._rejected(rejected)
        self.ws.send_response(response)
        if response.status_code != 101:
            self._end_turn()
        else:
            if budget is not None:
                budget.connections.spend(1)
            host.take_address(host.address_connections, self.address, 1 << 62)
            self._opened(wire_of(response), budget)
            if commands is None:
                # The rest is the client's to send: waiting for it costs the worker nothing,
                # so it holds no place (a client that never sends connect blocks no one).
                self._end_turn()
            else:
                self._fast_open(commands)  # in flight until its one write (_release_head)

    # Admission (socketsrv/admission.py: admission.Turn)

    def _wait_for_turn(self, request: Request) -> None:
        """Past ``max_handshakes`` in flight: wait, with no deadline running. The socket is
        still read, so that a client that gives up is noticed at once (connection_lost or
        eof_received, then _detach withdraws it); what it sends meanwhile is held for its
        turn, up to ``max_frame_bytes``, past which reading pauses."""
        self._waiting_request = request
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _hold_early(self, items: list[Frame] | list[bytes]) -> None:
        """Keep what the client sent while it waits: frames parsed with its request, bytes
        after it (not parsed yet: the websocket layer answers some frames itself, and nothing
        may be written before the 101)."""
        if not items:
            return
        early = self._early
        if early is None:
            early = self._early = []
        early.extend(items)
        self._early_bytes += sum(len(x.data) if isinstance(x, Frame) else len(x) for x in items)
        if self._early_bytes > self.host.config.max_frame_bytes and self.transport is not None:
            self.transport.pause_reading()

    def waiting_for_turn(self) -> bool:
        return self._waiting_request is not None and self.state is ConnectionState.CONNECTING

    def take_turn(self) -> None:
        request, self._waiting_request = self._waiting_request, None
        assert request is not None  # checked by waiting_for_turn
        self._turn = True
        early, self._early = self._early, None
        self._on_request(request)
        self._send_ws_output()  # the 101 first
        if early is not None and self.state is _OPEN:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
            for item in early:
                if self.state is not _OPEN:
                    break
                if isinstance(item, Frame):
                    self._on_frame(item)
                else:
                    self.data_received(item)  # no longer waiting: read as any bytes
            self._after_frames()

    def _end_turn(self) -> None:
        """Its opening ended (answered, refused or closed): the next handshake may go."""
        if self._turn:
            self._turn = False
            admission = self.host.admission
            if admission is not None:
                admission.leave()

    def _fast_open(self, commands: list[str]) -> None:
        """Run the open token's commands as the connection's first messages (JSON whatever
        the wire); the 101 and their answers are written together once every one is
        answered (docs/protocol.md#fast-open)."""
        self._head = b"".join(self.ws.data_to_send())
        self._gate = []
        # Request ids start at 1: 0 stands for the commands not run yet, so that a subscribe
        # answered at once (a channel live here) does not release the head before the rest.
        self._opening = {_RUNNING_OPEN}
        self.host.metrics.fast_opens.inc()
        for text in commands:
            if self.state is not _OPEN:
                break  # the connect closed it (4004, 4500) or a flood did
            self._handle(text, WireFormat.JSON)
        self._fast_open_answered(_RUNNING_OPEN)

    def _fast_open_answered(self, request_id: int | None = None) -> None:
        """A fast open's subscribe was answered (:data:`_RUNNING_OPEN`: its commands were
        all run; None: its connect was): once nothing is left unanswered, the 101 and the
        answers go in one write."""
        opening = self._opening
        if opening is None:
            return
        if request_id is not None:
            opening.discard(request_id)
        if not opening and not (self._session is not None and self._session.connect_pending):
            self._release_head()

    def _release_head(self) -> None:
        """The held 101 first, then every frame held behind it, queued for one write."""
        head, self._head = self._head, None
        held, self._gate = self._gate or [], None
        self._opening = None
        if head is None:
            return
        if self._compress:
            held = [reframe(self.ws, frame) for frame in held]
        pending = self._pending
        if not pending:
            self._scheduler.mark(self)
        pending[:0] = [head, *held]
        if self._drain_waiters:
            self._wake_replays()
        self._end_turn()

    def _rejected(self, reason: str) -> None:
        self.host.metrics.handshake_rejections.labels(reason=reason).inc()

    def _opened(self, wire: WireFormat, budget: AddressBudget | None) -> None:
        self._move(ConnectionState.OPEN, "open")
        host = self.host
        self.wire = wire
        self._session = Session(
            client_id=host.new_client_id(),
            wire=wire,
            limits=host.config.limits,
            verifier=host.verifier,
            now=host.clock(),
            address=budget,
            namespaces=host.config.namespaces,
        )
        self.ws.gate = self._admit_frame
        host.connections.add(self)
        host.metrics.connections_open.inc()
        host.metrics.connections_accepted.inc()
        # The client has connect_timeout_s from the 101 (not from the TCP accept) to say who
        # it is: time a busy worker spent before answering is not the client's.
        self._arm_connect_timer()
        if log.isEnabledFor(logging.DEBUG):
            self._peer = _peer_of(self.transport)
            log.debug(
                "client %s opened: peer %s, %s", self._session.client_id, self._peer, wire.value
            )

    def _arm_connect_timer(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
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
        if self.state is ConnectionState.CONNECTING:
            if not self.ws.eof_sent:  # no complete HTTP request was ever answered
                self._rejected("timeout")
            self.abort()
        elif self.state is _OPEN and self.session.state is SessionState.AWAITING_CONNECT:
            self.close_with(CloseCode.CONNECT_TIMEOUT)

    # Incoming frames

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(bytes(frame.data), opcode is Opcode.TEXT)
            else:
                self._fragments = Fragments(bytes(frame.data), opcode is Opcode.TEXT)
        elif opcode is Opcode.CONT and self._fragments is not None:
            fragments = self._fragments
            message = fragments.add(bytes(frame.data), frame.fin)
            if message is not None:
                self._fragments = None
                self._on_message(message, fragments.text)
        elif opcode is Opcode.CLOSE:
            if self.state is _OPEN:
                self._move(ConnectionState.CLOSING, "receive a close frame")
        elif self.state is _OPEN:
            self.session.last_seen = self.host.clock()  # a ping or pong frame is a sign of life

    def _admit_frame(self, frame: Frame) -> bool:
        """The frame budget (websocket.GatedServerProtocol): a ping, a pong or a fragment
        costs a command's token; a flood of them fails the connection with 4006."""
        if self.state is not _OPEN:
            return True
        admitted = self.session.frame_received(self.host.clock())
        if admitted is True:
            return True
        opcode = frame.opcode
        kind = "ping" if opcode is Opcode.PING else "pong" if opcode is Opcode.PONG else "fragment"
        self.host.metrics.frames_refused.labels(kind=kind).inc()
        if isinstance(admitted, CloseWith):
            self._fail(admitted.code)  # no closing handshake: the rest of the input is dropped
        return False

    def _on_message(self, data: bytes, is_text: bool) -> None:
        if self.state is not _OPEN:
            return
        payload: bytes | str = data
        if is_text:
            try:
                payload = data.decode()
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_DATA)
                return
        self._handle(payload)

    def _handle(self, payload: bytes | str, encoding: WireFormat | None = None) -> None:
        """One client message (or an open token's command: *encoding* JSON) to the session."""
        session = self.session
        connecting = session.state is SessionState.AWAITING_CONNECT
        expiry = session.expires_deadline
        try:
            effects = session.receive(
                payload, self.host.clock(), self.host.wall_clock(), encoding=encoding
            )
        except Exception:
            # A bug below us must not escape data_received: asyncio would drop the TCP
            # connection with no close frame and nothing counted.
            log.exception("client %s: cannot handle a message", session.client_id)
            self.close_with(CloseCode.INTERNAL_ERROR)
            return
        if session.expires_deadline != expiry:  # a token: connect, or refresh
            self.host.expiries.track(self, session.expires_deadline)
        if connecting and session.state is SessionState.CONNECTED:
            # Accepted: a worker whose bus is down says so at once, just ahead of the connect
            # reply so that the client never shows "live" in between (docs/protocol.md#delivery),
            # and tells this connection of every change from now on.
            self.host.hub.attend(self)
        if connecting and session.connect_pending:
            if self._gate is None:
                self._gate = []
            self._gate_reply_at = len(self._gate)
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
                if not effect.server:
                    metrics.commands.labels(op="subscribe").inc()
                    if self._opening is not None:
                        self._opening.add(effect.request_id)
                host = self.host
                if host.take_address(
                    host.address_subscriptions,
                    self.address,
                    host.config.max_subscriptions_per_address,
                ):
                    self._address_subs.add(effect.channel.name)
                    self._start_subscribe(effect)
                else:
                    metrics.subscriptions_refused.labels(reason="address").inc()
                    self._subscribe_refused(effect, ErrorCode.TOO_MANY_SUBSCRIPTIONS)
            elif isinstance(effect, StopSubscription):
                metrics.commands.labels(op="unsubscribe").inc()
                self._stop_subscription(effect.channel)
            elif isinstance(effect, CloseWith):
                self.close_with(effect.code)
            elif isinstance(effect, CountTelemetry):
                count_telemetry(metrics, effect)

    # Subscriptions (the hub does the work; the session says what to reply)

    def _start_subscribe(self, effect: StartSubscribe) -> None:
        name = effect.channel.name
        try:
            # A channel live on this worker is answered at once, without a task.
            done = self.host.hub.subscribe_at_once(
                self, name, effect.since, self._on_subscribed(effect)
            )
        except Exception:
            log.exception("subscribe to %s failed", name)
            self.close_with(CloseCode.INTERNAL_ERROR)
            return
        if done:
            return
        task = asyncio.ensure_future(self._subscribe(effect))
        self._subscribing[name] = (task, effect)
        task.add_done_callback(lambda t: self._subscribe_done(name, t))

    def _on_subscribed(self, effect: StartSubscribe) -> OnSubscribed:
        """What the hub calls when *effect*'s subscribe is answered: its reply pushed."""
        session = self.session

        def on_subscribed(position: StreamPosition, recovery: Recovery) -> None:
            if effect.server:
                reply = session.server_subscribed(effect.channel.name, position, recovery)
                if reply is not None:
                    self._open_gate(reply.frame)
                return
            self.push(session.subscribed(effect.request_id, position, recovery).frame)
            self._fast_open_answered(effect.request_id)

        return on_subscribed

    async def _subscribe(self, effect: StartSubscribe) -> None:
        on_subscribed = self._on_subscribed(effect)
        try:
            await self.host.hub.subscribe(self, effect.channel.name, effect.since, on_subscribed)
        except BusUnavailable as exc:
            log.info("subscribe to %s refused: %s", effect.channel.name, exc.why)
            self._subscribe_refused(effect, ErrorCode.UNAVAILABLE)
        except ChannelLimit:
            self.host.metrics.subscriptions_refused.labels(reason="channels").inc()
            self._subscribe_refused(effect, ErrorCode.UNAVAILABLE)

    def _subscribe_refused(self, effect: StartSubscribe, code: ErrorCode) -> None:
        """A subscribe the hub (or the address limit) refused: an error reply, or for a
        server-side subscription its entry in the connect reply."""
        if not effect.server:
            self._reply_failed(effect.request_id, effect.channel, code)
            return
        self._release_subscription(effect.channel.name)
        reply = self.session.server_subscribe_failed(effect.channel.name, code)
        if reply is not None:
            self._open_gate(reply.frame)

    def _open_gate(self, connect_reply: bytes) -> None:
        """The connect reply is complete: it goes first, then what was held behind it (the
        server-side subscriptions' replays, and any reply or live frame meanwhile); in a
        fast open, behind the 101 once the open's subscribes are answered too."""
        if self._head is not None and self._gate is not None:
            self._gate.insert(self._gate_reply_at, connect_reply)
            self._fast_open_answered()
            return
        held, self._gate = self._gate, None
        self.push(connect_reply)
        for frame in held or ():
            self.push(frame)
        if self._drain_waiters:
            self._wake_replays()

    def _release_subscription(self, name: str) -> None:
        if name in self._address_subs:
            self._address_subs.discard(name)
            self.host.release_address(self.host.address_subscriptions, self.address)

    def _reply_failed(self, request_id: int, channel: Channel, code: ErrorCode) -> None:
        self._release_subscription(channel.name)
        self.host.metrics.errors.labels(code=str(int(code))).inc()
        self.push(self.session.subscribe_failed(request_id, channel, code).frame)
        self._fast_open_answered(request_id)

    def _subscribe_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._subscribing.get(name, (None,))[0] is task:
            del self._subscribing[name]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("subscribe to %s failed", name, exc_info=exc)
            self.close_with(CloseCode.INTERNAL_ERROR)

    def _stop_subscription(self, channel: Channel) -> None:
        pending = self._subscribing.pop(channel.name, None)
        if pending is not None and pending[0].cancel():
            # Withdrawn before the hub answered it: every command gets one answer, so the
            # subscribe is answered 410 before the unsubscribe's own reply.
            self._reply_failed(pending[1].request_id, channel, ErrorCode.NOT_SUBSCRIBED)
        self._release_subscription(channel.name)
        self.host.hub.unsubscribe(self, channel.name)

    def replay_affordable(self) -> bool:
        """See :meth:`socketsrv.recovery.ReplayBudget.replay_affordable`."""
        session = self._session
        return session is None or session.replay_affordable(self.host.clock())

    def take_replay(self, nbytes: int) -> bool:
        """Whether a recovery may replay *nbytes* to this connection (recovery.ReplayBudget):
        the session's replay budget decides; refused, the subscribe's recovery is failed."""
        metrics = self.host.metrics
        if self._session is not None and not self._session.take_replay(nbytes, self.host.clock()):
            metrics.replays_refused.inc()
            return False
        metrics.replay_bytes.inc(nbytes)
        return True

    # Paced replays (recovery.PacedSubscriber)

    def replay_room(self) -> int:
        """See :meth:`socketsrv.recovery.PacedSubscriber.replay_room`: the replay mark less
        what the transport holds unsent and what this turn queued."""
        transport = self.transport
        if self.state is not _OPEN or transport is None:
            return 0
        queued = sum(map(len, self._pending))
        if self._held is not None:
            queued += self._held.nbytes
        if self._gate is not None:
            queued += sum(map(len, self._gate))
        return self._replay_mark - transport.get_write_buffer_size() - queued

    async def replay_drained(self) -> bool:
        """See :meth:`socketsrv.recovery.PacedSubscriber.replay_drained`."""
        while self.state is _OPEN:
            if self._gate is not None:
                await self._gate_opened()
                continue
            if self.replay_room() > 0:
                return True
            transport = self.transport
            assert transport is not None  # set before the 101
            if transport.get_write_buffer_size() < self._replay_mark and self._held is None:
                # The room is taken by what this turn queued, written at its end (writes.py).
                await asyncio.sleep(0)
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            if len(self._drain_waiters) == 1:
                # Calls pause_writing at once (the buffer is past the mark), resume_writing
                # once the client has read it down to half the mark.
                self._set_limits()
            try:
                await waiter
            finally:
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)
        return False

    async def _gate_opened(self) -> None:
        """Wait until the connect reply has gone (_open_gate), or the connection closes."""
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    @property
    def replays_waiting(self) -> int:
        """Paced replays waiting for the client to read (tests and debugging)."""
        return len(self._drain_waiters)

    def resume_writing(self) -> None:
        """The transport drained below its low-water mark: held frames go on, then paced
        replays."""
        if self._held is not None:
            self._refused_at = asyncio.get_running_loop().time()  # it held bytes until now
            self._feed_held()
        if self._drain_waiters:
            self._wake_replays()

    def _wake_replays(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._set_limits()

    def _set_limits(self) -> None:
        """The transport's marks: ``outbox_max_bytes`` (past it: slow); lowered to the replay
        mark (low at half) while a paced replay waits, so that ``resume_writing`` says when
        the client has read that far; to 0 while frames are held, so that it says when the
        transport is empty."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._held is not None:
            # Told when the transport has handed everything to the kernel: held frames wait
            # (and conflate) until then, then the head of the queue goes (_feed_held).
            transport.set_write_buffer_limits(high=0, low=0)
        elif self._drain_waiters:
            transport.set_write_buffer_limits(high=self._replay_mark, low=self._replay_mark // 2)
        else:
            transport.set_write_buffer_limits(high=self._outbox_max_bytes)

    @property
    def _lowered(self) -> bool:
        """Whether the transport's mark is below ``outbox_max_bytes`` (see _set_limits)."""
        return bool(self._drain_waiters) or self._held is not None

    # Conflation (socketsrv/outbox.py)

    @property
    def held_frames(self) -> int:
        """Frames held back past the conflation mark (tests and debugging)."""
        return 0 if self._held is None else len(self._held)

    def _hold(self, frame: bytes) -> None:
        """Queue *frame* behind what the transport holds; past the bound: slow."""
        held = self._held
        transport = self.transport
        assert held is not None
        assert transport is not None  # set before the 101
        pub = self.host.hub.fanning_out
        if pub is not None and pub.frame(self.wire) is not frame:
            pub = None  # not the fan-out's frame: a reply, a heartbeat, a replayed one
        if held.add(frame, pub):
            self.host.metrics.conflated.inc()
        buffered = transport.get_write_buffer_size()
        if held.nbytes + buffered > self._outbox_max_bytes:
            asyncio.get_running_loop().call_soon(self._slow)
        elif not buffered:
            self._feed_soon()

    def _feed_soon(self) -> None:
        """The transport is empty and frames are held: feed it at the end of the turn, with
        the other writers (writes.py; the frames of one turn go together, and supersede each
        other first). Nothing is pending while frames are held."""
        if not self._feed_due:
            self._feed_due = True
            self._scheduler.mark(self)

    def _feed_at_end_of_turn(self) -> None:
        self._feed_due = False
        transport = self.transport
        if (
            self._held is not None
            and transport is not None
            and not transport.get_write_buffer_size()
        ):
            self._feed_held()

    def _congested(self) -> None:
        """The transport went past the conflation mark: hold frames from now on, and let
        the kernel take little more than it can send (CONGESTED_LOWAT_BYTES)."""
        self._held = HeldFrames(self.wire)
        self._refused_at = asyncio.get_running_loop().time()
        lowat = self.host.config.send_lowat_bytes
        if lowat:
            self._set_lowat(min(lowat, CONGESTED_LOWAT_BYTES))
        self._set_limits()  # calls pause_writing at once (past the mark): not slow

    def _uncongested(self) -> None:
        """Caught up: frames go straight to the transport again, with the socket's own
        ``send_lowat_bytes``."""
        self._held = None
        if self._calm_timer is not None:
            self._calm_timer.cancel()
            self._calm_timer = None
        lowat = self.host.config.send_lowat_bytes
        if lowat:
            self._set_lowat(lowat)
        self._set_limits()

    def _catch_up(self) -> None:
        """Nothing held and the transport empty: no longer congested once the kernel has
        taken every write for CALM_S (looked at again then, if nothing came meanwhile)."""
        loop = asyncio.get_running_loop()
        calm_for = loop.time() - self._refused_at
        if calm_for >= CALM_S:
            self._uncongested()
        elif self._calm_timer is None:
            self._calm_timer = loop.call_later(CALM_S - calm_for, self._calm_expired)

    def _calm_expired(self) -> None:
        self._calm_timer = None
        held, transport = self._held, self.transport
        if self.state is not _OPEN or held is None or held or transport is None:
            return  # closed, not congested, or still busy: a later feed looks again
        if transport.get_write_buffer_size() == 0:
            self._catch_up()

    def _set_lowat(self, nbytes: int) -> None:
        transport = self.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP (a Unix socket in tests): no limit
                sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, nbytes)

    def _feed_held(self) -> None:
        """The transport is empty: hand it the head of the held frames, CONGESTED_LOWAT_BYTES
        at a time, for as long as the kernel takes them all at once (then the transport
        calls pause_writing, and resume_writing once empty again). Once the queue is empty
        and the kernel has taken every write for CALM_S, the connection is not congested
        any more."""
        held, transport = self._held, self.transport
        assert held is not None
        if self.state is not _OPEN or transport is None or transport.is_closing():
            return
        written = 0
        budget = self._feed_bytes
        while held and transport.get_write_buffer_size() == 0:
            out = held.take(budget)
            if self._hb_held:
                self._hb_held = False  # the heartbeat was at the head: it is written now
                self._hb_end = self._written + len(out[0])
            data = out[0] if len(out) == 1 else b"".join(out)
            self._write(transport, data)
            written += len(data)
        if written:
            self.host.metrics.bytes_written.inc(written)
        if transport.get_write_buffer_size():
            self._refused_at = asyncio.get_running_loop().time()
        elif not held and self._held is held:
            self._catch_up()
        if self._drain_waiters and self.replay_room() > 0:
            self._wake_replays()

    def _write(self, transport: asyncio.Transport, data: bytes) -> None:
        self._written += len(data)
        transport.write(data)

    # Heartbeats (sweep.Sweeper)

    def send_heartbeat(self, frame: bytes) -> None:
        """Queue the heartbeat *frame*: ahead of the held frames when congested, else like
        :meth:`push`. Remembers where it ends in the stream and what the client's TCP had
        acknowledged, for :meth:`reading_toward_heartbeat`."""
        if self.state is not _OPEN:
            self.push(frame)  # WrongState before the 101; dropped once closing
            return
        self._acked_seen = self._bytes_acked()
        held = self._held
        transport = self.transport
        self._hb_behind = held is not None or bool(
            transport is not None and transport.get_write_buffer_size()
        )
        if held is None or self._compress:
            self.push(frame)
            self._hb_held = False
            self._hb_end = self._written + sum(map(len, self._pending))
            return
        held.add_first(frame)
        self._hb_held = True
        self._hb_end = None
        if transport is not None and transport.get_write_buffer_size() == 0:
            self._feed_soon()

    def reading_toward_heartbeat(self) -> bool:
        """Whether the client is still reading its way to the unanswered heartbeat: its TCP
        has acknowledged more bytes since the heartbeat was queued (or since the last call),
        and either not yet the heartbeat's last byte, or that only since the last call when
        a backlog was ahead of the heartbeat (the client then still reads its own receive
        buffer up to it). A dead or deaf client acknowledges nothing more; a stopped one at
        most its receive buffer, once; one that reads everything but never answers is not
        behind a backlog. False where the kernel does not tell (no ``TCP_INFO``): the
        heartbeat's deadline then stands."""
        acked = self._bytes_acked()
        seen, self._acked_seen = self._acked_seen, acked
        if acked is None or seen is None or acked <= seen:
            return False
        end = self._hb_end
        if end is None or acked < end:
            self._hb_behind = True
            return True
        return self._hb_behind and seen < end

    def _bytes_acked(self) -> int | None:
        """The bytes the client's TCP acknowledged (Linux ``tcpi_bytes_acked``), or None."""
        transport = self.transport
        sock = None if transport is None or TCP_INFO is None else transport.get_extra_info("socket")
        if sock is None:
            return None
        end = TCP_INFO_BYTES_ACKED_AT + TCP_INFO_BYTES_ACKED.size
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, end)
        except OSError:
            return None
        if len(info) < end:
            return None
        acked: int = TCP_INFO_BYTES_ACKED.unpack_from(info, TCP_INFO_BYTES_ACKED_AT)[0]
        return acked

    # Outgoing frames (hub.Subscriber, writes.Writer)

    def push(self, frame: bytes) -> None:
        """Queue one complete frame, written at the end of the loop turn.

        Dropped once the connection is closing; never re-enters the hub (detaching happens
        on a later loop turn). Raises WrongState before the 101.
        """
        if self.state is not _OPEN:
            if self.state is ConnectionState.CONNECTING:
                raise WrongState("connection", "push a frame", self.state)
            return
        if self._gate is not None:
            self._gate.append(frame)
            return
        if self._compress:
            frame = reframe(self.ws, frame)
        elif self._held is not None:
            self._hold(frame)
            return
        pending = self._pending
        if not pending:
            self._scheduler.mark(self)
        pending.append(frame)

    def write_queued(self) -> int:
        """See :meth:`socketsrv.writes.Writer.write_queued`."""
        if self._feed_due:
            self._feed_at_end_of_turn()  # congested: counts its own bytes; nothing is pending
        pending = self._pending
        if not pending:
            return 0  # written by the connection itself (a close) earlier in the turn
        transport = self.transport
        assert transport is not None  # set before the 101
        if self.state is not _OPEN or transport.is_closing():
            # Closing: the transport may have been closed in this very turn, before
            # connection_lost moves the state on. What was queued is dropped unjoined.
            pending.clear()
            return 0
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if len(data) > self._outbox_max_bytes:
            self.close_with(CloseCode.SLOW)
            return 0
        self._write(transport, data)
        if self._lowered and transport.get_write_buffer_size() > self._outbox_max_bytes:
            # The transport's mark is lowered meanwhile: it calls pause_writing once.
            asyncio.get_running_loop().call_soon(self._slow)
        elif (
            self._conflate_mark is not None
            and self._held is None
            and transport.get_write_buffer_size() > self._conflate_mark
        ):
            self._congested()
        return len(data)

    def _write_now(self) -> None:
        """Write everything queued in one call now, ahead of a close frame."""
        if self._head is not None:
            self._release_head()  # the 101 goes ahead of anything
        pending = self._pending
        transport = self.transport
        held, self._held = self._held, None
        if held is not None:
            pending[:0] = held.take(self._outbox_max_bytes)  # held frames came first
        if not pending or transport is None or transport.is_closing():
            pending.clear()
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        # Past outbox_max_bytes buffered, the transport calls pause_writing.
        self._write(transport, data)

    def pause_writing(self) -> None:
        """The transport holds more than ``outbox_max_bytes`` the client has not read: slow.

        Called from inside ``transport.write``; the close happens on the next loop turn.
        While a paced replay waits, the transport's mark is the replay mark: only past
        ``outbox_max_bytes`` is it slow (write_queued checks on from there)."""
        if self._lowered:
            transport = self.transport
            held = 0 if self._held is None else self._held.nbytes
            if (
                transport is None
                or transport.get_write_buffer_size() + held <= self._outbox_max_bytes
            ):
                return
        asyncio.get_running_loop().call_soon(self._slow)

    def _slow(self) -> None:
        if self.state is _OPEN:
            self.close_with(CloseCode.SLOW)

    # Closing

    def close_with(self, code: CloseCode, reason: str | None = None) -> None:
        """Start the closing handshake with *code*; never blocks.

        The reason is *reason*, else the table's (with a ``retry_ms`` hint drawn in
        0..``reconnect_spread_s`` for the codes that carry one). Does nothing once closing
        (a connection is closed once); raises WrongState before the 101 (nothing to close
        with a code yet).
        """
        if self.state is not _OPEN:
            if self.state is ConnectionState.CONNECTING:
                raise WrongState("connection", "close with a code", self.state)
            return
        self._move(ConnectionState.CLOSING, "close")
        if code is CloseCode.SLOW:
            self._pending.clear()  # what a slow client has not read, it will recover
            self._held = None
        else:
            self._write_now()
        self.host.metrics.disconnects.labels(code=str(int(code))).inc()
        if self.ws.state is State.OPEN:
            spread_s = self.host.config.reconnect_spread_s
            self.ws.send_close(code, reason or close_reason(code, spread_s))
        self._send_ws_output()
        asyncio.get_running_loop().call_soon(self._detach)

    def _fail(self, code: CloseCode) -> None:
        self._move(ConnectionState.CLOSING, "fail")
        self.host.metrics.disconnects.labels(code=str(int(code))).inc()
        self.ws.fail(code, CLOSE_TABLE[code].reason)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    def _send_ws_output(self) -> None:
        transport = self.transport
        if transport is None:
            return
        out = self.ws.data_to_send()
        if out:
            self._write_now()  # keep our frames ahead of a close frame
            for data in out:
                if data:
                    self._write(transport, data)
                elif transport.can_write_eof():
                    transport.write_eof()
        if self.ws.close_expected() and self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(
                self.host.config.close_timeout_s, self.abort
            )
        if self.ws.state is State.CLOSED:
            transport.close()

    def _detach(self) -> None:
        """Leave the hub and the worker's set: CLOSED. Runs once, whichever way it closed."""
        if self.state is ConnectionState.CLOSED:
            return
        self._end_turn()
        if self._waiting_request is not None:
            self._waiting_request = self._early = None
            admission = self.host.admission
            if admission is not None:
                admission.withdraw()
        self._move(ConnectionState.CLOSED, "detach")
        self.ws.gate = None  # no cycle left between the connection and its protocol
        for task, _ in self._subscribing.values():
            task.cancel()
        self._subscribing.clear()
        session = self._session
        if session is None:
            return
        host = self.host
        host.release_address(host.address_subscriptions, self.address, len(self._address_subs))
        self._address_subs.clear()
        host.release_address(host.address_connections, self.address)
        self.host.hub.remove(self, session.subscriptions)
        host.expiries.forget(self)
        session.closed()
        self.host.connections.discard(self)
        self.host.metrics.connections_open.dec()

    def _log_closed(self) -> None:
        code, by = close_of(self.ws)
        log.debug(
            "client %s closed: peer %s, code %d %s", self.session.client_id, self._peer, code, by
        )


_RUNNING_OPEN = 0
"""In a fast open's unanswered ids while its commands are being run (no request id is 0)."""


def _peer_of(transport: asyncio.BaseTransport | None) -> str:
    peer = None if transport is None else transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
