"""Client commands: parse one websocket message into a typed command (docs/protocol.md#commands).

:func:`parse_command` is the only place where client input is looked at; what it returns is
typed and validated (channel names included), so nothing inward ever sees a raw dict.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import msgspec

from herald_contract.channels import MAX_CHANNEL_LENGTH, Channel, parse_channel
from herald_contract.envelope import StreamPosition
from herald_contract.errors import InvalidChannel
from herald_contract.namespaces import Namespaces
from socketsrv.errors import CommandError
from socketsrv.protocol.codes import ErrorCode
from socketsrv.protocol.telemetry import InvalidTelemetry, TelemetryReport, parse_counts

MAX_REQUEST_ID = 2**31 - 1
MAX_TOKEN_LENGTH = 4096
MAX_EPOCH_LENGTH = 64
MAX_CONNECT_POSITIONS = 32
"""The most positions a connect's ``since`` may carry (auth.MAX_SUBS: one per server-side
subscription a token may name)."""


class WireFormat(enum.Enum):
    """How frames are encoded, chosen by the websocket subprotocol at the handshake."""

    JSON = "herald.v1.json"
    MSGPACK = "herald.v1.msgpack"

    @property
    def subprotocol(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Connect:
    id: int
    token: str | None
    since: Mapping[str, StreamPosition] = field(default_factory=dict)
    """The client's positions in its server-side subscriptions, by channel name (names the
    token does not list in ``subs`` are ignored; docs/protocol.md#server-side-subscriptions)."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: int
    channel: Channel
    since: StreamPosition | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: int
    channel: Channel


@dataclass(frozen=True, slots=True)
class Refresh:
    """A fresh token for the same user, sent before the current one expires."""

    id: int
    token: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a server heartbeat; it has no id and gets no reply."""


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A client's counts since its last accepted report (docs/protocol.md#client-telemetry)."""

    id: int
    report: TelemetryReport


Command = Connect | Subscribe | Unsubscribe | Refresh | Ping | Pong | Telemetry


_JSON = msgspec.json.Decoder()
"""Strict JSON (RFC 8259: no ``NaN``, no lone surrogates), four times faster than
``json.loads`` on a command."""


def _decode(payload: bytes | str, wire: WireFormat) -> Any:
    if wire is WireFormat.JSON:
        if isinstance(payload, bytes):
            raise CommandError(ErrorCode.BAD_REQUEST, "binary frame on the JSON protocol")
        try:
            return _JSON.decode(payload)
        except (ValueError, RecursionError):
            raise CommandError(ErrorCode.BAD_REQUEST, "malformed JSON") from None
    if isinstance(payload, str):
        raise CommandError(ErrorCode.BAD_REQUEST, "text frame on the msgpack protocol")
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError):
        raise CommandError(ErrorCode.BAD_REQUEST, "malformed msgpack") from None


def _valid_id(value: object) -> int | None:
    return value if type(value) is int and 1 <= value <= MAX_REQUEST_ID else None


def peek_request_id(payload: bytes | str, wire: WireFormat) -> int | None:
    """The id of a message that will not be executed (rate limit), so its error names it."""
    try:
        fields = _decode(payload, wire)
    except CommandError:
        return None
    return _valid_id(fields.get("id")) if isinstance(fields, dict) else None


def _request_id(fields: dict[str, Any], op: str) -> int:
    value = fields.get("id")
    if type(value) is not int or not 1 <= value <= MAX_REQUEST_ID:
        raise CommandError(
            ErrorCode.BAD_REQUEST, f"{op} needs an integer id from 1 to {MAX_REQUEST_ID}"
        )
    return value


def _channel(fields: dict[str, Any], request_id: int, namespaces: Namespaces | None) -> Channel:
    try:
        return parse_channel(fields.get("channel"), namespaces)
    except InvalidChannel as exc:
        raise CommandError(ErrorCode.INVALID_CHANNEL, exc.why, request_id) from None


def _since(fields: dict[str, Any], request_id: int) -> StreamPosition | None:
    since = fields.get("since")
    if since is None:
        return None
    return _position(since, request_id)


def _position(since: object, request_id: int) -> StreamPosition:
    if not isinstance(since, dict):
        raise CommandError(ErrorCode.BAD_REQUEST, "since must be {epoch, offset}", request_id)
    epoch, offset = since.get("epoch"), since.get("offset")
    if not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH:
        raise CommandError(ErrorCode.BAD_REQUEST, "since.epoch must be a short string", request_id)
    if type(offset) is not int or not 0 <= offset < 2**63:
        raise CommandError(
            ErrorCode.BAD_REQUEST, "since.offset must be a non-negative integer", request_id
        )
    return StreamPosition(epoch, offset)


def _connect_positions(fields: dict[str, Any], request_id: int) -> dict[str, StreamPosition]:
    """A connect's ``since``: {channel name: {epoch, offset}} for its server-side
    subscriptions; names are only checked for length here (unknown ones are ignored)."""
    since = fields.get("since")
    if since is None:
        return {}
    if not isinstance(since, dict) or len(since) > MAX_CONNECT_POSITIONS:
        raise CommandError(
            ErrorCode.BAD_REQUEST,
            f"connect since must map at most {MAX_CONNECT_POSITIONS} channels to positions",
            request_id,
        )
    positions: dict[str, StreamPosition] = {}
    for name, position in since.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_CHANNEL_LENGTH:
            raise CommandError(
                ErrorCode.BAD_REQUEST, "connect since keys must be channel names", request_id
            )
        positions[name] = _position(position, request_id)
    return positions


def parse_command(
    payload: bytes | str, wire: WireFormat, namespaces: Namespaces | None = None
) -> Command:
    """Parse one client message; raise :class:`CommandError` if it is not a v1 command.

    Channel names follow *namespaces* (None: the shipped file's kinds).
    """
    fields = _decode(payload, wire)
    if not isinstance(fields, dict):
        raise CommandError(ErrorCode.BAD_REQUEST, "a command is an object")
    op = fields.get("op")
    if op == "pong":
        return Pong()
    if not isinstance(op, str):
        raise CommandError(ErrorCode.BAD_REQUEST, "a command needs an op")
    if op not in ("connect", "subscribe", "unsubscribe", "refresh", "ping", "telemetry"):
        raise CommandError(
            ErrorCode.UNKNOWN_COMMAND, "not an op of protocol v1", _valid_id(fields.get("id"))
        )
    request_id = _request_id(fields, op)
    if op == "subscribe":
        channel = _channel(fields, request_id, namespaces)
        return Subscribe(request_id, channel, _since(fields, request_id))
    if op == "unsubscribe":
        return Unsubscribe(request_id, _channel(fields, request_id, namespaces))
    if op == "ping":
        return Ping(request_id)
    if op == "telemetry":
        try:
            return Telemetry(request_id, parse_counts(fields.get("counts")))
        except InvalidTelemetry as exc:
            raise InvalidTelemetry(exc.detail, request_id) from None
    token = fields.get("token")
    if op == "refresh" and token is None:
        raise CommandError(ErrorCode.BAD_REQUEST, "refresh needs a token", request_id)
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH):
        raise CommandError(
            ErrorCode.BAD_REQUEST,
            f"token must be a string of at most {MAX_TOKEN_LENGTH}",
            request_id,
        )
    if op == "refresh":
        assert token is not None
        return Refresh(request_id, token)
    return Connect(request_id, token, _connect_positions(fields, request_id))
