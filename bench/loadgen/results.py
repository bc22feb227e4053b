"""What the load processes answer, command by command, and the coordinator's sums of it.

Each load process answers a command over its pipe with one of the ``*Reply`` dictionaries
(plain dicts: they are pickled across the pipe); :class:`bench.loadgen.generator.LoadGenerator`
sums the replies of every process into the types without ``Reply``. The scenarios copy some
of these fields into the results JSON under the same names.
"""

from __future__ import annotations

from typing import TypedDict


class OpenReply(TypedDict):
    opened: int
    """Connections ready (every subscription confirmed) before the timeout."""
    seconds: float
    retries: int
    """Attempts made after a failed one (only when opened with ``retry``)."""


class Opened(TypedDict):
    requested: int
    opened: int
    seconds: float
    retries: int


class Progress(TypedDict):
    """Cheap counters, polled often: data messages received, sockets open, clients ready."""

    messages: int
    open: int
    ready: int


class ConnectionTrouble(TypedDict):
    lost_unexpectedly: int
    """Connections the server closed without a closing handshake the client asked for."""
    adapter_errors: int
    adapter_error_codes: dict[str, int]
    connect_failures: dict[str, int]
    """By exception name (refused, timed out)."""
    handshake_failures: dict[str, int]
    """By HTTP status of a refused upgrade."""
    closes: dict[str, int]
    """Close frames received, by close code."""


class ProcessStats(ConnectionTrouble):
    clients: int
    open: int
    ready: int
    cpu_s: float
    """The process's own CPU time (user + system) since it started."""
    publications: int
    duplicates: int
    gaps: int
    subscribed: int
    recovered: int
    recovery_failed: int
    latency_pending: int
    """Latency samples not drained yet."""


class Stats(ProcessStats):
    per_process_cpu_s: list[float]


class ShortClient(TypedDict):
    """One client that got fewer publications than were published on its channels: where
    each of its channels stands, for the coordinator to hold against the channel's top."""

    channels: list[str]
    want: int
    got: int
    ready: bool
    positions: dict[str, list[str | int]]
    """Per channel, the [epoch, offset] of the last publication received in order (a
    channel missing here has no position: nothing received, no subscribe reply)."""
    socket: str
    """Its current connection ("none", or process.py's ``_socket_state``)."""


class Verify(TypedDict):
    """Each client's publications (duplicates aside) against what was published on its
    channels since the last reset."""

    clients_exact: int
    clients_short: int
    missing: int
    extra: int
    clients_never_ready: int
    """Clients never ready since the reset: nothing could be sent to them."""
    missing_never_ready: int
    short_samples: list[ShortClient]
    """Up to ten short clients per load process, as they stand."""


class CloseReply(TypedDict):
    aborted: int
    """Connections still open at the timeout of the closing handshakes."""


class ReconnectReply(TypedDict):
    reconnected: int
    seconds: float
    retries: int


class Reconnected(TypedDict):
    reconnected: int
    retries: int
    seconds: float
    per_process_seconds: list[float]


class ChurnCounts(TypedDict):
    launched: int
    completed: int
    failed: int
    errors: dict[str, int]
    """``error:<exception name>`` -> count."""
    throttled_ticks: int
    """Launch ticks on which every slot of the concurrency bound was taken."""
    seconds: float


class ChurnReply(ChurnCounts):
    cycle_ms: list[float]
    """Connect + subscribe + close, per completed cycle."""
