"""One connection's protocol state, without I/O (docs/protocol.md#session).

The adapter (socketsrv/connection.py) feeds each complete client message to
:meth:`Session.receive` and carries out the :data:`Effect` values it returns, in order.
Subscriptions that need the bus come back as :class:`StartSubscribe`; the adapter reports the
outcome with :meth:`Session.subscribed` or :meth:`Session.subscribe_failed`. A connect whose
token names server-side subscriptions (``subs``) comes back as one ``StartSubscribe`` per
channel with ``server`` set and no reply: the adapter holds every frame back while
:attr:`Session.connect_pending`, reports each outcome with
:meth:`Session.server_subscribed` or :meth:`Session.server_subscribe_failed`, and the last
one returns the connect reply, to be written ahead of what was held
(docs/protocol.md#server-side-subscriptions).

States::

    AWAITING_CONNECT --connect ok--> CONNECTED --close--> CLOSED
           \\--------------- close / timeout -------------/
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from herald_contract.channels import Channel, parse_channel
from herald_contract.envelope import StreamPosition
from herald_contract.errors import InvalidChannel
from herald_contract.namespaces import Namespaces
from socketsrv.errors import CommandError, WrongState
from socketsrv.protocol import frames
from socketsrv.protocol.auth import Identity, TokenExpired, TokenRejected, TokenVerifier
from socketsrv.protocol.budget import AddressBudget, TokenBucket
from socketsrv.protocol.codes import ERROR_TABLE, CloseCode, ErrorCode
from socketsrv.protocol.commands import (
    Connect,
    Ping,
    Pong,
    Refresh,
    Subscribe,
    Telemetry,
    Unsubscribe,
    WireFormat,
    parse_command,
    peek_request_id,
)
from socketsrv.protocol.telemetry import InvalidTelemetry, TelemetryReport, TelemetryResult

PROTOCOL_VERSION = 1


class SessionState(enum.Enum):
    AWAITING_CONNECT = "awaiting_connect"
    CONNECTED = "connected"
    CLOSED = "closed"


class Recovery(enum.Enum):
    """The ``recovery`` of a subscribe reply (docs/protocol.md#subscribe); values are wire text."""

    NONE = "none"
    """No ``since`` was given: live from the reply's position on."""
    RECOVERED = "recovered"
    """Every publication after ``since`` follows the reply, then live ones."""
    FAILED = "failed"
    """The history does not cover ``since`` (window or epoch): reload, go on from the reply."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection limits (docs/configuration.md); units are in the names."""

    max_subscriptions: int = 128
    commands_per_s: float = 20.0
    commands_burst: int = 50
    flood_refusals: int = 50
    """Refused commands in a row after which the connection is closed with 4006."""
    replay_bytes_per_s: float = 64 * 1024
    replay_burst_bytes: int = 1024 * 1024
    """The replay budget: bytes of missed publications sent by recoveries (a byte bucket)."""
    ping_interval_s: float = 25.0
    pong_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    allow_anonymous: bool = True
    telemetry_interval_s: float = 30.0
    """At most one telemetry report per connection is accepted per interval (error 429)."""


@dataclass(frozen=True, slots=True)
class Send:
    frame: bytes
    error: ErrorCode | None = None
    """Set when the frame is an error reply (the adapter counts it by code)."""


@dataclass(frozen=True, slots=True)
class CloseWith:
    code: CloseCode


@dataclass(frozen=True, slots=True)
class StartSubscribe:
    request_id: int
    channel: Channel
    since: StreamPosition | None
    server: bool = False
    """A server-side subscription of the connect *request_id*: its outcome goes to
    :meth:`Session.server_subscribed` / :meth:`Session.server_subscribe_failed`."""


@dataclass(frozen=True, slots=True)
class StopSubscription:
    channel: Channel


@dataclass(frozen=True, slots=True)
class CountTelemetry:
    """A telemetry report's outcome, for the adapter's counters (the core holds no metrics);
    *report* is set when it was accepted (docs/protocol.md#client-telemetry)."""

    result: TelemetryResult
    report: TelemetryReport | None = None


Effect = Send | CloseWith | StartSubscribe | StopSubscription | CountTelemetry


@dataclass(slots=True)
class _PendingConnect:
    """A connect reply that waits for its server-side subscriptions."""

    request_id: int
    result: dict[str, Any]
    subs: dict[str, dict[str, Any]]
    """Each server-side subscription's result, in the token's order (None until known)."""
    waiting: set[str]


class Session:
    """Protocol state of one connection; every method takes the current time in seconds."""

    __slots__ = (
        "_address",
        "_commands",
        "_connecting",
        "_expires_deadline",
        "_heartbeat_at",
        "_refused_in_row",
        "_replay",
        "_replay_refused",
        "_telemetry_at",
        "client_id",
        "expires_at",
        "grants",
        "last_seen",
        "limits",
        "namespaces",
        "opened_at",
        "server_subs",
        "state",
        "subscriptions",
        "user_id",
        "verifier",
        "wire",
    )

    def __init__(
        self,
        *,
        client_id: str,
        wire: WireFormat,
        limits: Limits,
        verifier: TokenVerifier | None,
        now: float,
        address: AddressBudget | None = None,
        namespaces: Namespaces | None = None,
    ) -> None:
        """*address*: the budget this connection shares with the others of its client
        address (None: the address is exempt), spent as well as the connection's own.
        *namespaces*: the installation's channel kinds (None: the shipped file's)."""
        self.client_id = client_id
        self.wire = wire
        self.limits = limits
        self.verifier = verifier
        self.state = SessionState.AWAITING_CONNECT
        self.user_id: str | None = None
        self.namespaces = namespaces
        self.grants: tuple[str, ...] = ()
        """The token's ``channels`` claim: what ``subscribe = "token"`` kinds it may read."""
        self.expires_at: float | None = None
        """The token's ``exp`` (wall clock), sent in the connect reply."""
        self._expires_deadline: float | None = None
        self._heartbeat_at: float | None = None
        self.subscriptions: set[str] = set()
        """Channels subscribed or being subscribed (the limit counts both)."""
        self.server_subs: set[str] = set()
        """Of :attr:`subscriptions`, those the token's ``subs`` made (the client may not
        unsubscribe them)."""
        self._connecting: _PendingConnect | None = None
        self.opened_at = now
        self.last_seen = now
        self._commands = TokenBucket(limits.commands_per_s, limits.commands_burst, now)
        self._refused_in_row = 0
        self._replay = TokenBucket(limits.replay_bytes_per_s, limits.replay_burst_bytes, now)
        self._address = address
        self._telemetry_at: float | None = None
        """When the last telemetry report was accepted (monotonic)."""
        self._replay_refused = 0
        """Bytes of the last replay the budgets refused (0: the last one was taken)."""

    @property
    def connect_pending(self) -> bool:
        """Whether the connect reply waits for server-side subscriptions: the adapter holds
        every frame back meanwhile (the reply goes first)."""
        return self._connecting is not None

    @property
    def expires_deadline(self) -> float | None:
        """When (monotonic clock) the token runs out: ``expires_at`` plus the verifier's
        leeway; None for an anonymous connection."""
        return self._expires_deadline

    # Input

    def receive(
        self,
        payload: bytes | str,
        now: float,
        wall_now: float | None = None,
        *,
        encoding: WireFormat | None = None,
    ) -> list[Effect]:
        """Handle one complete client message.

        *now* is the monotonic clock (heartbeats, rate limit, deadlines); *wall_now* is
        seconds since the epoch, needed only to check a token's ``exp`` (RFC 7519 4.1.4);
        None means the two clocks agree (tests with one fake clock). *encoding* is the
        message's own when it is not the connection's (the open token's commands are JSON
        on every wire: socketsrv/protocol/opening.py); replies are in the connection's.
        """
        decode_as = self.wire if encoding is None else encoding
        if self.state is SessionState.CLOSED:
            raise WrongState("session", "receive", self.state)
        self.last_seen = now
        admitted = self.frame_received(now)
        if isinstance(admitted, CloseWith):
            return [admitted]
        if not admitted:
            return [self._error(peek_request_id(payload, decode_as), ErrorCode.TOO_MANY_REQUESTS)]
        try:
            command = parse_command(payload, decode_as, self.namespaces)
        except CommandError as exc:
            error = self._error(exc.request_id, exc.code, exc.why)
            if isinstance(exc, InvalidTelemetry):
                return [error, CountTelemetry(TelemetryResult.INVALID)]
            return [error]
        if isinstance(command, Pong):
            return []
        if isinstance(command, Connect):
            return self._connect(command, now, now if wall_now is None else wall_now)
        if self.state is not SessionState.CONNECTED:
            return [self._error(command.id, ErrorCode.NOT_CONNECTED)]
        if isinstance(command, Ping):
            return [Send(frames.reply(command.id, {}, self.wire))]
        if isinstance(command, Subscribe):
            return self._subscribe(command)
        if isinstance(command, Refresh):
            return self._refresh(command, now, now if wall_now is None else wall_now)
        if isinstance(command, Telemetry):
            return self._telemetry(command, now)
        return self._unsubscribe(command)

    def frame_received(self, now: float) -> bool | CloseWith:
        """Charge one token for a frame: a whole message, or one that is not (a websocket
        ping or pong, a fragment of a message but its last). True: admitted; False: refused
        (a refused ping gets no pong); close 4006 at ``flood_refusals`` refusals in a row.

        A message sent in N frames costs N tokens (docs/protocol.md#limits).
        """
        self.last_seen = now
        if self._take_token(now):
            self._refused_in_row = 0
            return True
        self._refused_in_row += 1
        if self._refused_in_row >= self.limits.flood_refusals:
            if self._address is not None:
                self._address.flooded(now)
            return self._close(CloseCode.FLOOD)
        return False

    def take_replay(self, nbytes: int, now: float) -> bool:
        """Whether a recovery may replay *nbytes* of missed publications now, all or nothing;
        charged to the replay budgets (the connection's and its address's) when it may
        (refused: the subscribe's recovery fails)."""
        address = self._address
        own = self._replay
        taken = _take_both(own, address.replay if address else None, nbytes, now)
        refused = 0 if taken else nbytes
        self._replay_refused = refused
        if address is not None:
            address.replay_refused = refused
        if nbytes > own.burst:
            # It can never be taken: the bucket is emptied, so that asking again waits for
            # a whole refill rather than costing a full history read each time.
            own.spend(own.level(now))
        return taken

    def replay_affordable(self, now: float) -> bool:
        """Whether the replay budgets could now cover a replay as big as the last one each
        refused (this connection's, and its address's): until then a subscribe from a
        position is answered from the channel's position alone."""
        if not _affordable(self._replay, self._replay_refused, now):
            return False
        address = self._address
        return address is None or _affordable(address.replay, address.replay_refused, now)

    def _take_token(self, now: float) -> bool:
        address = self._address
        return _take_both(self._commands, address.commands if address else None, 1, now)

    def _connect(self, command: Connect, now: float, wall_now: float) -> list[Effect]:
        if self.state is not SessionState.AWAITING_CONNECT:
            return [self._error(command.id, ErrorCode.ALREADY_CONNECTED)]
        subs: list[Channel] | None = []
        if command.token is None:
            if not self.limits.allow_anonymous:
                return [self._close(CloseCode.UNAUTHORIZED)]
        elif self.verifier is None:
            # No public key configured: tokens cannot be checked, so none is trusted.
            return [self._close(CloseCode.UNAUTHORIZED)]
        else:
            identity = self._verify(command.token, wall_now)
            if isinstance(identity, CloseWith):
                return [identity]
            subs = self._server_channels(identity)
            if subs is None:
                return [self._close(CloseCode.UNAUTHORIZED)]
            self.user_id = identity.user_id
            self.grants = identity.channels + identity.subs
            self._set_expiry(identity, now, wall_now)
        self.state = SessionState.CONNECTED
        result: dict[str, Any] = {
            "version": PROTOCOL_VERSION,
            "client": self.client_id,
            "user": self.user_id,
            "expires_at": self.expires_at,
            "ping_interval_ms": round(self.limits.ping_interval_s * 1000),
            "pong_timeout_ms": round(self.limits.pong_timeout_s * 1000),
            "commands_per_s": self.limits.commands_per_s,
            "commands_burst": self.limits.commands_burst,
            "max_subscriptions": self.limits.max_subscriptions,
        }
        if not subs:
            return [Send(frames.reply(command.id, result, self.wire))]
        return self._start_server_subs(command, result, subs)

    def _server_channels(self, identity: Identity) -> list[Channel] | None:
        """The token's ``subs`` parsed; None if one is not a channel name of this
        installation or not one the token's user may read (then the token is invalid)."""
        grants = identity.channels + identity.subs
        channels = []
        for name in identity.subs:
            try:
                channel = parse_channel(name, self.namespaces)
            except InvalidChannel:
                return None
            if not channel.readable_by(identity.user_id, grants):
                return None
            channels.append(channel)
        return channels

    def _start_server_subs(
        self, command: Connect, result: dict[str, Any], subs: list[Channel]
    ) -> list[Effect]:
        pending = _PendingConnect(command.id, result, {}, set())
        effects: list[Effect] = []
        for channel in subs:
            name = channel.name
            if len(self.subscriptions) >= self.limits.max_subscriptions:
                pending.subs[name] = _failure(ErrorCode.TOO_MANY_SUBSCRIPTIONS)
                continue
            pending.subs[name] = {}
            pending.waiting.add(name)
            self.subscriptions.add(name)
            self.server_subs.add(name)
            effects.append(StartSubscribe(command.id, channel, command.since.get(name), True))
        if not pending.waiting:
            return [self._connect_reply(pending)]
        self._connecting = pending
        return effects

    def _connect_reply(self, pending: _PendingConnect) -> Send:
        self._connecting = None
        result = {**pending.result, "subs": pending.subs}
        return Send(frames.reply(pending.request_id, result, self.wire))

    def _verify(self, token: str, wall_now: float) -> Identity | CloseWith:
        """Who *token* authenticates, or the close it calls for (4004 expired, 4500 invalid)."""
        assert self.verifier is not None
        try:
            return self.verifier.verify(token, wall_now)
        except TokenExpired:
            return self._close(CloseCode.TOKEN_EXPIRED)
        except TokenRejected:
            return self._close(CloseCode.UNAUTHORIZED)

    def _set_expiry(self, identity: Identity, now: float, wall_now: float) -> None:
        assert self.verifier is not None
        self.expires_at = identity.expires_at
        # The deadline on the monotonic clock, so a wall-clock jump cannot close anyone.
        self._expires_deadline = now + (identity.expires_at + self.verifier.leeway_s - wall_now)

    def _refresh(self, command: Refresh, now: float, wall_now: float) -> list[Effect]:
        """A fresh token for the same user: the connection lives on, no reconnect needed."""
        if self.user_id is None or self.verifier is None:
            return [self._error(command.id, ErrorCode.PERMISSION_DENIED, "anonymous connection")]
        identity = self._verify(command.token, wall_now)
        if isinstance(identity, CloseWith):
            return [identity]
        if identity.user_id != self.user_id or self._server_channels(identity) is None:
            return [self._close(CloseCode.UNAUTHORIZED)]  # a connection never changes user
        # For later subscribes; subscriptions made stay, server-side ones included (a
        # changed ``subs`` takes effect at the next connect).
        self.grants = identity.channels + identity.subs
        self._set_expiry(identity, now, wall_now)
        return [Send(frames.reply(command.id, {"expires_at": self.expires_at}, self.wire))]

    def _telemetry(self, command: Telemetry, now: float) -> list[Effect]:
        """Accept at most one report per ``telemetry_interval_s``; the adapter counts it."""
        last = self._telemetry_at
        if last is not None and now - last < self.limits.telemetry_interval_s:
            detail = "one telemetry report per telemetry_interval_s"
            return [
                self._error(command.id, ErrorCode.TOO_MANY_REQUESTS, detail),
                CountTelemetry(TelemetryResult.EARLY),
            ]
        self._telemetry_at = now
        report = command.report
        result = TelemetryResult.CLAMPED if report.clamped else TelemetryResult.ACCEPTED
        return [Send(frames.reply(command.id, {}, self.wire)), CountTelemetry(result, report)]

    def _subscribe(self, command: Subscribe) -> list[Effect]:
        channel = command.channel
        if not channel.readable_by(self.user_id, self.grants):
            return [self._error(command.id, ErrorCode.PERMISSION_DENIED)]
        if channel.name in self.subscriptions:
            return [self._error(command.id, ErrorCode.ALREADY_SUBSCRIBED)]
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            return [self._error(command.id, ErrorCode.TOO_MANY_SUBSCRIPTIONS)]
        self.subscriptions.add(channel.name)
        return [StartSubscribe(command.id, channel, command.since)]

    def _unsubscribe(self, command: Unsubscribe) -> list[Effect]:
        if command.channel.name not in self.subscriptions:
            return [self._error(command.id, ErrorCode.NOT_SUBSCRIBED)]
        if command.channel.name in self.server_subs:
            detail = "a server-side subscription lasts as long as the connection"
            return [self._error(command.id, ErrorCode.PERMISSION_DENIED, detail)]
        self.subscriptions.discard(command.channel.name)
        return [
            StopSubscription(command.channel),
            Send(frames.reply(command.id, {}, self.wire)),
        ]

    # Outcomes reported by the adapter

    def subscribed(self, request_id: int, position: StreamPosition, recovery: Recovery) -> Send:
        """The reply to a subscribe that the hub completed (see :class:`Recovery`)."""
        result = {"epoch": position.epoch, "offset": position.offset, "recovery": recovery.value}
        return Send(frames.reply(request_id, result, self.wire))

    def subscribe_failed(self, request_id: int, channel: Channel, code: ErrorCode) -> Send:
        """Forget a subscription the hub could not make; the error reply to send."""
        self.subscriptions.discard(channel.name)
        return self._error(request_id, code)

    def server_subscribed(
        self, name: str, position: StreamPosition, recovery: Recovery
    ) -> Send | None:
        """A server-side subscription the hub completed; the connect reply once it was the
        last one waited for (write it ahead of the frames held back meanwhile)."""
        result = {"epoch": position.epoch, "offset": position.offset, "recovery": recovery.value}
        return self._server_outcome(name, result)

    def server_subscribe_failed(self, name: str, code: ErrorCode) -> Send | None:
        """Forget a server-side subscription the hub could not make (see
        :meth:`server_subscribed`); the connect reply reports it under its channel."""
        self.subscriptions.discard(name)
        self.server_subs.discard(name)
        return self._server_outcome(name, _failure(code))

    def _server_outcome(self, name: str, result: dict[str, Any]) -> Send | None:
        pending = self._connecting
        if pending is None or name not in pending.waiting:
            raise WrongState("session", f"report a server-side subscription of {name}", self.state)
        pending.waiting.discard(name)
        pending.subs[name] = result
        return None if pending.waiting else self._connect_reply(pending)

    # Time

    def deadline_passed(self, now: float) -> CloseCode | None:
        """The close code if one of this connection's deadlines has passed at *now*.

        No pong: a heartbeat was sent more than ``pong_timeout_s`` ago and nothing arrived
        since. Token expiry: ``exp`` plus the verifier's leeway has passed.
        """
        if self.state is SessionState.AWAITING_CONNECT:
            if now - self.opened_at > self.limits.connect_timeout_s:
                return CloseCode.CONNECT_TIMEOUT
            return None
        if self.state is SessionState.CONNECTED:
            sent = self._heartbeat_at
            if (
                sent is not None
                and self.last_seen <= sent
                and now - sent > self.limits.pong_timeout_s
            ):
                return CloseCode.NO_PONG
            if self._expires_deadline is not None and self._expires_deadline <= now:
                return CloseCode.TOKEN_EXPIRED
        return None

    def heartbeat_due(self) -> bool:
        """Whether to send a heartbeat: connected, and the last one was answered (any frame
        after it counts). An unanswered one is left to :meth:`deadline_passed`."""
        if self.state is not SessionState.CONNECTED or self._connecting is not None:
            return False  # nothing goes ahead of the connect reply
        sent = self._heartbeat_at
        return sent is None or self.last_seen > sent

    def heartbeat_sent(self, now: float) -> None:
        self._heartbeat_at = now

    def heartbeat_delayed(self, now: float) -> None:
        """The unanswered heartbeat still waits behind bytes the client is reading (the
        connection saw its TCP acknowledge more): a slow client, not a dead one. Its
        deadline runs again from *now*; no new heartbeat is sent meanwhile."""
        if self.state is not SessionState.CONNECTED or self._heartbeat_at is None:
            raise WrongState("session", "delay a heartbeat", self.state)
        self._heartbeat_at = now

    def closed(self) -> None:
        """The connection is gone; no more input is accepted."""
        self.state = SessionState.CLOSED

    def _close(self, code: CloseCode) -> CloseWith:
        return CloseWith(code)

    def _error(self, request_id: int | None, code: ErrorCode, detail: str = "") -> Send:
        return Send(frames.error(request_id, code, self.wire, detail), code)


def _affordable(bucket: TokenBucket, refused: int, now: float) -> bool:
    """Whether *bucket* holds *refused* tokens, or as many as it can ever hold."""
    return refused == 0 or bucket.has(min(refused, bucket.burst), now)


def _take_both(own: TokenBucket, shared: TokenBucket | None, n: float, now: float) -> bool:
    """Take *n* from both buckets, or from neither."""
    if shared is None:
        return own.take(n, now)
    if not (own.has(n, now) and shared.has(n, now)):
        return False
    own.spend(n)
    shared.spend(n)
    return True


def _failure(code: ErrorCode) -> dict[str, Any]:
    """A server-side subscription's result in the connect reply when it was not made."""
    return {"error": {"code": int(code), "message": ERROR_TABLE[code].message}}
