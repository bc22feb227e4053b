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

How many run at once adapts to how long they take (``handshake_target_s``, 1 s). Each
handshake's time in flight is measured. One that took longer than the target cuts the limit
to three quarters (at most once per target interval, so that one slow batch counts once);
one that took less raises it: by one per handshake until the first cut (doubling the limit
every round of handshakes, from :data:`LIMIT_FLOOR`), then by one per round. The limit stays
between :data:`LIMIT_FLOOR` and ``max_handshakes``. The measure is what a client waits for
once its turn has come, so under a storm the worker runs about as many handshakes as it can
finish within the target, and those past them wait in the queue, where waiting costs
nothing and a client that gives up is withdrawn for free. Before, 500 ran at once in every
storm: on two cores shared with the load generator each took longer than the client's
10 s, which then gave up on a handshake the worker finished anyway, for nothing; from
about 80 % of 100,000 clients back the rate fell from ~900 to ~50 a second
(bench/results/REPORT.md, 2026-12-06, fifth session).

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

from prometheus_client import Counter, Gauge, Histogram

LIMIT_FLOOR = 16
"""The fewest handshakes the adaptive limit lets run at once (fewer when ``max_handshakes``
is lower): enough for a loop turn's history reads to go out as one pipeline."""
CUT = 0.75
"""What a handshake slower than the target multiplies the limit by."""


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
        target_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        queued: Gauge | None = None,
        abandoned: Counter | None = None,
        limit_gauge: Gauge | None = None,
        held: Histogram | None = None,
    ) -> None:
        self.ceiling = limit
        """``max_handshakes``: the most handshakes in flight; 0: no limit."""
        self.target_s = target_s if limit > 0 else 0.0
        """The time in flight the limit adapts to (``handshake_target_s``); 0: fixed."""
        self._window = float(min(limit, LIMIT_FLOOR) if self.target_s > 0 else limit)
        self._floor = float(min(limit, LIMIT_FLOOR))
        self._cut_at: float | None = None
        """When the limit was last cut; None: never (it still doubles every round)."""
        self._clock = clock
        self._limit_gauge = limit_gauge
        self._held = held
        self._show_limit()
        self.queue_max = queue_max
        self.in_flight = 0
        self.queued = 0
        """Requests waiting (withdrawn ones may still sit in :attr:`_waiting` until passed)."""
        self._waiting: deque[Turn] = deque()
        self._call_soon = call_soon
        self._queued = queued
        self._abandoned = abandoned
        self._scheduled = False

    @property
    def limit(self) -> int:
        """How many handshakes may be in flight now; 0: no limit."""
        return int(self._window)

    def enter(self, turn: Turn) -> Verdict:
        """A new upgrade request: go, wait (queued behind the others), or full."""
        if self.ceiling <= 0 or (self.in_flight < self.limit and not self.queued):
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

    def leave(self, held_s: float = 0.0) -> None:
        """A handshake in flight ended (opened, refused or closed) after *held_s* seconds in
        flight: the limit adapts to it, and the next may go, on the next loop turn (never
        inside the callback of the one that ended)."""
        self.in_flight -= 1
        if self._held is not None:
            self._held.observe(held_s)
        if self.target_s > 0:
            self._adapt(held_s)
        if self.queued and not self._scheduled:
            self._scheduled = True
            self._call_soon(self._admit)

    def _adapt(self, held_s: float) -> None:
        window = self._window
        if held_s > self.target_s:
            assert self._clock is not None  # required with a target
            now = self._clock()
            if self._cut_at is not None and now - self._cut_at < self.target_s:
                return  # this slow round was counted already
            self._cut_at = now
            window = max(self._floor, window * CUT)
        elif self._cut_at is None:
            window += 1.0  # a round of fast handshakes doubles it
        else:
            window += 1.0 / window  # then one more per round
        self._window = min(float(self.ceiling), window)
        self._show_limit()

    def _show_limit(self) -> None:
        if self._limit_gauge is not None:
            self._limit_gauge.set(self.limit)

    def admit_all(self) -> None:
        """Take up every waiting request now (the worker is draining: each is refused)."""
        self._admit(everyone=True)

    def _admit(self, everyone: bool = False) -> None:
        self._scheduled = False
        while self.queued and (everyone or self.ceiling <= 0 or self.in_flight < self.limit):
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
