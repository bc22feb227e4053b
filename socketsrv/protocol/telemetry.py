"""Client telemetry reports, read and bounded (docs/protocol.md#client-telemetry).

A client counts what happened to it (reconnects by close code, recoveries, gaps, deaf
sockets, time without updates) and sends the counts since its last accepted report in a
``telemetry`` command. The fleet adds them to Prometheus counters and trusts them for nothing
else: every value is validated here, folded to a bounded set of labels and clamped, so that
one client can neither add a label nor inflate a counter by more than the clamps per report
(issue 12, item 6).

:func:`parse_counts` takes the decoded ``counts`` map and returns a :class:`TelemetryReport`;
a map it cannot read raises :class:`InvalidTelemetry` (error 400, nothing counted).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from socketsrv.errors import CommandError
from socketsrv.protocol.codes import CLOSE_TABLE, ErrorCode

MAX_KEYS = 32
"""Entries in ``counts``, and in its ``reconnects`` map; more is error 400."""
MAX_KEY_LENGTH = 32
MAX_VALUE = 2**31 - 1
"""Largest value read at all; larger (or negative, or not an integer) is error 400."""
MAX_COUNT = 1000
"""A count (per reconnect label too) is clamped to this per report."""
MAX_DURATION_MS = 3_600_000
"""``disconnected_ms`` and ``delayed_ms`` are clamped to one hour per report."""

LOCAL = "local"
"""The reconnect label of a socket the client gave up itself (no close code: deaf, a gap,
no connect reply in time, a protocol error)."""
OTHER = "other"
"""The reconnect label of every code outside :data:`RECONNECT_LABELS`."""
ABNORMAL = 1006
"""What a browser reports when the connection dropped without a close frame, or the
handshake failed (RFC 6455 section 7.4.1): not sent by a server, but the commonest close a
browser sees."""

RECONNECT_LABELS: tuple[str, ...] = (
    *(str(int(code)) for code in sorted(CLOSE_TABLE)),
    str(ABNORMAL),
    LOCAL,
    OTHER,
)
"""The values of the ``code`` label of ``herald_client_reconnects_total``: the close table's
codes, 1006, ``local`` and ``other``."""
_KNOWN_RECONNECTS = frozenset(RECONNECT_LABELS)

COUNT_FIELDS = ("recovered", "recovery_failed", "gaps", "deaf")
DURATION_FIELDS = ("disconnected_ms", "delayed_ms")
RECONNECTS = "reconnects"


class InvalidTelemetry(CommandError):
    """A ``counts`` map that is not a valid report: error 400, the report is not counted."""

    def __init__(self, detail: str, request_id: int | None = None) -> None:
        self.detail = detail
        super().__init__(ErrorCode.BAD_REQUEST, f"telemetry: {detail}", request_id)


class TelemetryResult(enum.Enum):
    """What became of a report (the ``result`` label of herald_client_telemetry_reports_total)."""

    ACCEPTED = "accepted"
    CLAMPED = "clamped"
    """Accepted, with at least one value cut to its clamp."""
    INVALID = "invalid"
    """Error 400: not counted."""
    EARLY = "early"
    """Error 429: sooner than ``telemetry_interval_s`` after the last accepted one."""


@dataclass(frozen=True, slots=True)
class TelemetryReport:
    """One accepted report, validated, folded and clamped: ready to add to counters."""

    reconnects: tuple[tuple[str, int], ...] = ()
    """(label, count) pairs, labels from :data:`RECONNECT_LABELS`, each label once."""
    recovered: int = 0
    recovery_failed: int = 0
    gaps: int = 0
    deaf: int = 0
    disconnected_ms: int = 0
    delayed_ms: int = 0
    clamped: bool = False
    ignored_keys: int = 0
    """Keys of ``counts`` this server does not know (a newer client's): ignored."""


def reconnect_label(key: str) -> str:
    """The label a ``reconnects`` key counts under: itself if known, else ``other``."""
    return key if key in _KNOWN_RECONNECTS else OTHER


def _value(key: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_VALUE:
        raise InvalidTelemetry(f"{key} must be an integer from 0 to {MAX_VALUE}")
    return value


def _key(key: object) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidTelemetry(f"keys are strings of 1 to {MAX_KEY_LENGTH} characters")
    return key


def _reconnects(value: object) -> tuple[tuple[tuple[str, int], ...], bool]:
    if not isinstance(value, dict) or len(value) > MAX_KEYS:
        raise InvalidTelemetry(f"reconnects must be an object of at most {MAX_KEYS} entries")
    folded: dict[str, int] = {}
    for key, count in value.items():
        label = reconnect_label(_key(key))
        folded[label] = folded.get(label, 0) + _value("a reconnects count", count)
    clamped = any(count > MAX_COUNT for count in folded.values())
    pairs = tuple((label, min(count, MAX_COUNT)) for label, count in folded.items() if count)
    return pairs, clamped


def parse_counts(counts: object) -> TelemetryReport:
    """The report in a decoded ``counts`` map; raises :class:`InvalidTelemetry`.

    A missing field counts 0; a key it does not know is ignored (counted in
    ``ignored_keys``); a value that is not an integer from 0 to 2^31-1, a key that is not a
    short string, or more than :data:`MAX_KEYS` entries reject the whole report.
    """
    if not isinstance(counts, dict) or len(counts) > MAX_KEYS:
        raise InvalidTelemetry(f"counts must be an object of at most {MAX_KEYS} entries")
    values: dict[str, int] = {}
    reconnects: tuple[tuple[str, int], ...] = ()
    clamped = False
    ignored = 0
    for raw_key, value in counts.items():
        key = _key(raw_key)
        if key == RECONNECTS:
            reconnects, clamped = _reconnects(value)
        elif key in COUNT_FIELDS or key in DURATION_FIELDS:
            values[key] = _value(key, value)
        else:
            ignored += 1
    for key, value in values.items():
        bound = MAX_DURATION_MS if key in DURATION_FIELDS else MAX_COUNT
        if value > bound:
            values[key] = bound
            clamped = True
    return TelemetryReport(reconnects=reconnects, clamped=clamped, ignored_keys=ignored, **values)
