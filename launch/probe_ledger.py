"""Which probe each prober connection still owes, without I/O (used by :mod:`launch.prober`).

A probe is one publication on the prober's channel (``probe:<name>``, docs/protocol.md#channels)
carrying ``{"probe": <seq>, "run": <run id>, "sent_ms": <wall clock ms>}``. The ledger is told
when a probe is sent, when a connection receives one, and what time it is; it answers the
publish-to-receive latency of each first receipt and the number of (probe, connection) pairs
that missed their deadline. Time is whatever clock the caller reads (the prober's monotonic
clock, a fake one in tests): sending and receiving are timed in one process, so there is no
clock skew to measure.

A connection owes the probes sent after it first subscribed (:meth:`ProbeLedger.join`), and
keeps owing them while it reconnects: recovery from its last position must bring them, so a
connection that is down, deaf or told ``recovery: "failed"`` misses them, as a browser would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe read from a publication's data."""

    seq: int
    run: str


def probe_data(seq: int, run: str, sent_ms: int) -> dict[str, object]:
    """The data of probe *seq* of prober run *run*."""
    return {"probe": seq, "run": run, "sent_ms": sent_ms}


def parse_probe(data: object) -> Probe | None:
    """The probe that *data* carries, or None when it is not one (ignored, never an error)."""
    if not isinstance(data, Mapping):
        return None
    seq, run = data.get("probe"), data.get("run")
    if type(seq) is not int or seq < 1 or not isinstance(run, str):
        return None
    return Probe(seq, run)


@dataclass(slots=True)
class _Pending:
    sent_at: float
    owed_by: set[int]


@dataclass(slots=True)
class ProbeLedger:
    """Probes sent and not yet received by every connection that owes them.

    *deadline_s*: a probe not received by a connection this long after it was sent is a miss
    for that connection (counted once, by :meth:`expire`; a later receipt is ignored).
    """

    deadline_s: float
    members: set[int] = field(default_factory=set)
    _pending: dict[int, _Pending] = field(default_factory=dict)

    def join(self, connection: int) -> None:
        """*connection* has subscribed: it owes every probe sent from now on."""
        self.members.add(connection)

    def leave(self, connection: int) -> None:
        """*connection* gave up for good (a close that says do not reconnect): it owes nothing."""
        self.members.discard(connection)
        for seq in [seq for seq, pending in self._pending.items() if connection in pending.owed_by]:
            self._settle(seq, connection)

    def sent(self, seq: int, now: float) -> None:
        """Probe *seq* was published at *now*; every member owes it."""
        if self.members:
            self._pending[seq] = _Pending(now, set(self.members))

    def withdraw(self, seq: int) -> int:
        """Probe *seq* was not published after all: forget it; how many connections owed it."""
        pending = self._pending.pop(seq, None)
        return 0 if pending is None else len(pending.owed_by)

    def received(self, connection: int, seq: int, now: float) -> float | None:
        """*connection* received probe *seq* at *now*: the latency in seconds, or None when it
        owed no such probe (a repeat, a probe of before it joined, one already missed)."""
        pending = self._pending.get(seq)
        if pending is None or connection not in pending.owed_by:
            return None
        self._settle(seq, connection)
        return max(0.0, now - pending.sent_at)

    def expire(self, now: float) -> int:
        """Forget the probes past their deadline at *now*; the misses: one per connection that
        still owed one."""
        due = [seq for seq, p in self._pending.items() if now - p.sent_at >= self.deadline_s]
        return sum(len(self._pending.pop(seq).owed_by) for seq in due)

    @property
    def outstanding(self) -> int:
        """(probe, connection) pairs sent and neither received nor missed yet."""
        return sum(len(pending.owed_by) for pending in self._pending.values())

    def _settle(self, seq: int, connection: int) -> None:
        pending = self._pending[seq]
        pending.owed_by.discard(connection)
        if not pending.owed_by:
            del self._pending[seq]
