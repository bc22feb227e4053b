"""Admission control: how many opening handshakes a worker runs at once, and a queue for the
rest (docs/configuration.md ``max_handshakes``; issue 15, item 2).

A handshake is *in flight* from its upgrade request to the end of the worker's part of the
opening: the 101, or for a fast open (docs/protocol.md#fast-open) the one write that carries
the 101 and every answer (its history reads are the work that waits). A client that still
has to send its connect holds no place: waiting for it costs nothing. Past
``max_handshakes`` in flight, an upgrade request waits in a queue: no timer runs against it
(the client has done its part), and it is taken up as soon as a handshake in flight ends.
So in a reconnect storm the worker finishes the handshakes it started at the rate it can,
rather than starting thousands at once and finishing each so late that its client gives up.
Past ``handshake_queue`` waiting, a request is answered 503 with ``Retry-After``
(``herald_handshake_rejections_total{reason="busy"}``). Health, readiness and metrics
requests are answered before admission: they never wait here.

A client that leaves while its request waits (its connect timeout ran out: 10 s in
client-js) is noticed at once, since the socket of a waiting request is still read, and
withdrawn: no handshake work is ever done for it (``herald_handshakes_abandoned_total``).
Before, its request stayed queued, unread, and at its turn the worker ran the whole
handshake (token, subscribes, history reads) for a socket already gone: in a reconnect storm
the worker spent its CPU on clients that had given up while the ones that had come back
waited behind them.

The queue is served in order. Adaptive LIFO (the newest first once the oldest has waited a
while) was tried and measured worse: in the storm of 100,000 the oldest starved into their
timeout and retried, 15,000-20,000 retries against 1,900 in order, and fewer clients ready
at the bench's bound (bench/results/REPORT.md, 2026-12-06, fourth session).

Nothing here does I/O; the connection is told when its turn comes (:meth:`Turn.take_turn`)
and tells :meth:`Admission.withdraw` when its client leaves.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Counter, Gauge


class Turn(Protocol):
    def waiting_for_turn(self) -> bool:
        """Whether it still waits (False once its client has left)."""

    def take_turn(self) -> None:
        """Its handshake goes on now (it holds a place in flight)."""


class Verdict(enum.Enum):
    GO = "go"
    """Run the handshake now; call :meth:`Admission.leave` when it ends."""
    WAIT = "wait"
    """Queued: :meth:`Turn.take_turn` is called when its turn comes, unless its client leaves
    first (then call :meth:`Admission.withdraw`)."""
    FULL = "full"
    """The queue is full: answer 503."""


class Admission:
    """The handshakes in flight on one worker and the queue of those waiting."""

    def __init__(
        self,
        limit: int,
        queue_max: int,
        call_soon: Callable[[Callable[[], None]], object],
        *,
        queued: Gauge | None = None,
        abandoned: Counter | None = None,
    ) -> None:
        self.limit = limit
        """The most handshakes in flight; 0: no limit."""
        self.queue_max = queue_max
        self.in_flight = 0
        self.queued = 0
        """Requests waiting (withdrawn ones may still sit in :attr:`_waiting` until passed)."""
        self._waiting: deque[Turn] = deque()
        self._call_soon = call_soon
        self._queued = queued
        self._abandoned = abandoned
        self._scheduled = False

    def enter(self, turn: Turn) -> Verdict:
        """A new upgrade request: go, wait (queued behind the others), or full."""
        if self.limit <= 0 or (self.in_flight < self.limit and not self.queued):
            self.in_flight += 1
            return Verdict.GO
        if self.queued >= self.queue_max:
            return Verdict.FULL
        self._waiting.append(turn)
        self._count_queued(1)
        return Verdict.WAIT

    def withdraw(self) -> None:
        """A waiting request's client left: it no longer counts (its entry is passed over)."""
        self._count_queued(-1)
        if self._abandoned is not None:
            self._abandoned.inc()
        if len(self._waiting) > 2 * self.queued + 64:
            # Withdrawn entries behind a long-waiting one would otherwise stay until its turn.
            self._waiting = deque(t for t in self._waiting if t.waiting_for_turn())

    def leave(self) -> None:
        """A handshake in flight ended (opened, refused or closed): the next may go, on the
        next loop turn (never inside the callback of the one that ended)."""
        self.in_flight -= 1
        if self.queued and not self._scheduled:
            self._scheduled = True
            self._call_soon(self._admit)

    def admit_all(self) -> None:
        """Take up every waiting request now (the worker is draining: each is refused)."""
        self._admit(everyone=True)

    def _admit(self, everyone: bool = False) -> None:
        self._scheduled = False
        while self.queued and (everyone or self.limit <= 0 or self.in_flight < self.limit):
            turn = self._waiting.popleft()
            if not turn.waiting_for_turn():
                continue  # withdrawn: counted when its client left
            self._count_queued(-1)
            self.in_flight += 1
            turn.take_turn()

    def _count_queued(self, n: int) -> None:
        self.queued += n
        if self._queued is not None:
            self._queued.inc(n)
