"""Close codes and error codes: the contract with every client (docs/protocol.md#codes).

The table in docs/protocol.md is checked against these enums by
tests/docs/test_protocol_doc.py, and client-js/src/codes.ts mirrors them.

Close codes (the websocket close frame):

* 1000-1015 are RFC 6455 section 7.4.1 codes the server may send;
* 4000-4499 mean "reconnect (with backoff) and recover";
* 4500-4999 mean "do not reconnect": the client must change something first.

Codes the server sends to many clients at once for one cause of its own (a restart, a lost
stream, shedding load) carry a reconnect hint: their reason ends with ``retry_ms=<n>``, a wait
the server draws at random in 0..``reconnect_spread_s`` for each client (:func:`close_reason`),
so that the crowd it closes comes back spread over that window instead of at once (issue 12,
item 4: 4003 carried none and 5,000 clients came back together).

Error codes (the ``code`` of an error reply to one command) leave the connection open;
``retry`` says whether the same command may succeed later unchanged.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Callable
from dataclasses import dataclass


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    RESTART = 4000
    SLOW = 4001
    NO_PONG = 4002
    STATE_LOST = 4003
    TOKEN_EXPIRED = 4004
    CONNECT_TIMEOUT = 4005
    FLOOD = 4006
    REBALANCE = 4007
    UNAUTHORIZED = 4500


@dataclass(frozen=True, slots=True)
class CloseInfo:
    reason: str
    """The close frame's reason (short: RFC 6455 allows 123 bytes)."""
    reconnect: bool
    meaning: str
    hint: bool = False
    """The reason ends with ``retry_ms=<n>``: wait n ms (plus the backoff) to reconnect."""


CLOSE_TABLE: dict[CloseCode, CloseInfo] = {
    CloseCode.NORMAL: CloseInfo("normal", False, "the client closed, or asked to"),
    CloseCode.PROTOCOL_ERROR: CloseInfo(
        "protocol error", True, "a frame broke RFC 6455 (sent by the websocket layer)"
    ),
    CloseCode.INVALID_DATA: CloseInfo(
        "invalid utf-8", True, "a text frame was not valid UTF-8 (RFC 6455 section 8.1)"
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseInfo(
        "message too big", True, "a message exceeded the frame size limit (max_frame_bytes)"
    ),
    CloseCode.INTERNAL_ERROR: CloseInfo("internal error", True, "a bug on the server; logged"),
    CloseCode.RESTART: CloseInfo(
        "restart",
        True,
        "the worker is restarting; reconnect after the delay in the reason "
        "(restart retry_ms=<n>), then recover",
        hint=True,
    ),
    CloseCode.SLOW: CloseInfo(
        "slow", True, "the outgoing buffer exceeded outbox_max_bytes; reconnect and recover"
    ),
    CloseCode.NO_PONG: CloseInfo(
        "no pong",
        True,
        "a heartbeat went unanswered (no frame from the client) for pong_timeout_s",
    ),
    CloseCode.STATE_LOST: CloseInfo(
        "state lost",
        True,
        "the worker lost a channel's stream (history gone); reconnect after the delay in the "
        "reason (state lost retry_ms=<n>), recovery will fail for that channel and the app "
        "reloads its state",
        hint=True,
    ),
    CloseCode.TOKEN_EXPIRED: CloseInfo(
        "token expired", True, "the connection token expired; get a fresh one and reconnect"
    ),
    CloseCode.CONNECT_TIMEOUT: CloseInfo(
        "connect timeout", True, "no connect command within connect_timeout_s of the handshake"
    ),
    CloseCode.FLOOD: CloseInfo(
        "flood",
        True,
        "commands, or pings, pongs and fragments, kept arriving after the rate limit refused "
        "them; back off before reconnecting",
    ),
    CloseCode.REBALANCE: CloseInfo(
        "rebalance",
        True,
        "the worker holds clearly more than its share of the host's connections and sheds "
        "some; reconnect after the delay in the reason (rebalance retry_ms=<n>), then recover",
        hint=True,
    ),
    CloseCode.UNAUTHORIZED: CloseInfo(
        "unauthorized",
        False,
        "the token is invalid (signature, audience, claims), or not accepted here "
        "(no key configured, anonymous connections disallowed)",
    ),
}


class ErrorCode(enum.IntEnum):
    BAD_REQUEST = 400
    NOT_CONNECTED = 401
    PERMISSION_DENIED = 403
    UNKNOWN_COMMAND = 404
    ALREADY_CONNECTED = 405
    ALREADY_SUBSCRIBED = 409
    NOT_SUBSCRIBED = 410
    INVALID_CHANNEL = 422
    TOO_MANY_REQUESTS = 429
    TOO_MANY_SUBSCRIPTIONS = 430
    INTERNAL = 500
    UNAVAILABLE = 503


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    message: str
    retry: bool
    meaning: str


ERROR_TABLE: dict[ErrorCode, ErrorInfo] = {
    ErrorCode.BAD_REQUEST: ErrorInfo(
        "bad request",
        False,
        "not a command: malformed JSON or msgpack, wrong frame type, bad fields",
    ),
    ErrorCode.NOT_CONNECTED: ErrorInfo(
        "not connected", False, "a command before the connect command"
    ),
    ErrorCode.PERMISSION_DENIED: ErrorInfo(
        "permission denied", False, "the channel is private to another user (or needs a login)"
    ),
    ErrorCode.UNKNOWN_COMMAND: ErrorInfo("unknown command", False, "the op is not in protocol v1"),
    ErrorCode.ALREADY_CONNECTED: ErrorInfo(
        "already connected", False, "a second connect command on one connection"
    ),
    ErrorCode.ALREADY_SUBSCRIBED: ErrorInfo(
        "already subscribed", False, "subscribe to a channel this connection already has"
    ),
    ErrorCode.NOT_SUBSCRIBED: ErrorInfo(
        "not subscribed", False, "unsubscribe from a channel this connection does not have"
    ),
    ErrorCode.INVALID_CHANNEL: ErrorInfo(
        "invalid channel", False, "the name breaks the channel grammar"
    ),
    ErrorCode.TOO_MANY_REQUESTS: ErrorInfo(
        "too many requests",
        True,
        "more than commands_per_s, or a telemetry report within telemetry_interval_s of the "
        "last accepted one; wait and send again",
    ),
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: ErrorInfo(
        "too many subscriptions",
        False,
        "more than max_subscriptions per connection, or max_subscriptions_per_address from "
        "one address on this worker",
    ),
    ErrorCode.INTERNAL: ErrorInfo("internal error", True, "a bug on the server; logged"),
    ErrorCode.UNAVAILABLE: ErrorInfo(
        "unavailable",
        True,
        "the bus (Redis) cannot be reached right now, or the worker holds max_channels "
        "channels; retry with backoff",
    ),
}


HINTED: frozenset[CloseCode] = frozenset(code for code, info in CLOSE_TABLE.items() if info.hint)
"""The close codes whose reason carries ``retry_ms=<n>``."""

_HINT = re.compile(r"(?:^|\s)retry_ms=(\d{1,9})(?:\s|$)")


def close_reason(
    code: CloseCode, spread_s: float, rand: Callable[[int, int], int] = random.randint
) -> str:
    """The close frame's reason for *code*: the table's, plus ``retry_ms=<n>`` with n drawn
    by *rand* in 0..*spread_s* (in ms) when the code carries a hint."""
    info = CLOSE_TABLE[code]
    if not info.hint:
        return info.reason
    return f"{info.reason} retry_ms={rand(0, int(spread_s * 1000))}"


def retry_hint_s(reason: str) -> float:
    """The wait a close reason asks for (its ``retry_ms=<n>``), in seconds; 0 without one.

    Read the same way whatever the code (a newer server may hint on more codes); the
    client-js twin is ``retryHintMs`` in client-js/src/backoff.ts."""
    match = _HINT.search(reason)
    return 0.0 if match is None else int(match[1]) / 1000


def should_reconnect(code: int) -> bool:
    """Whether a client should reconnect after a close with *code* (codes not in the table: yes)."""
    try:
        return CLOSE_TABLE[CloseCode(code)].reconnect
    except ValueError:
        return not 4500 <= code <= 4999
