"""Admission control: how many opening handshakes a worker runs at once, and a queue for the
rest (docs/configuration.md ``max_handshakes``; issue 15, item 2).

A handshake is *in flight* from its upgrade request to the end of the worker's part of the
opening: the 101, or for a fast open (docs/protocol.md#fast-open) the one write that carries
the 101 and every answer (its history reads are the work that waits). A client that still
has to send its connect holds no place: waiting for it costs nothing. Past
``max_handshakes`` in flight, an upgrade request waits in a FIFO: its socket is not read, no
timer runs against it (the client has done its part), and it is taken up as soon as a
handshake in flight ends. So in a reconnect storm the worker finishes the handshakes it
started at the rate it can, rather than starting thousands at once and finishing each so
late that its client gives up and comes back: the reconnect loop that makes a storm last.
Past ``handshake_queue`` waiting, a request is answered 503 with ``Retry-After``
(``herald_handshake_rejections_total{reason="busy"}``). Health, readiness and metrics
requests are answered before admission: they never wait here.

Nothing here does I/O; the connection is told when its turn comes (:meth:`Turn.take_turn`).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Gauge


class Turn(Protocol):
    def waiting_for_turn(self) -> bool:
        """Whether it still waits (False once its socket is gone)."""

    def take_turn(self) -> None:
        """Its handshake goes on now (it holds a place in flight)."""


class Verdict(enum.Enum):
    GO = "go"
    """Run the handshake now; call :meth:`Admission.leave` when it ends."""
    WAIT = "wait"
    """Queued: :meth:`Turn.take_turn` is called when its turn comes."""
    FULL = "full"
    """The queue is full: answer 503."""


class Admission:
    """The handshakes in flight on one worker and the queue of those waiting."""

    def __init__(
        self,
        limit: int,
        queue_max: int,
        call_soon: Callable[[Callable[[], None]], object],
        queued: Gauge | None = None,
    ) -> None:
        self.limit = limit
        """The most handshakes in flight; 0: no limit."""
        self.queue_max = queue_max
        self.in_flight = 0
        self.waiting: deque[Turn] = deque()
        self._call_soon = call_soon
        self._queued = queued
        self._scheduled = False

    def enter(self, turn: Turn) -> Verdict:
        """A new upgrade request: go, wait (queued behind the others), or full."""
        if self.limit <= 0 or (self.in_flight < self.limit and not self.waiting):
            self.in_flight += 1
            return Verdict.GO
        if len(self.waiting) >= self.queue_max:
            return Verdict.FULL
        self.waiting.append(turn)
        if self._queued is not None:
            self._queued.inc()
        return Verdict.WAIT

    def leave(self) -> None:
        """A handshake in flight ended (opened, refused or closed): the next may go, on the
        next loop turn (never inside the callback of the one that ended)."""
        self.in_flight -= 1
        if self.waiting and not self._scheduled:
            self._scheduled = True
            self._call_soon(self._admit)

    def admit_all(self) -> None:
        """Take up every waiting request now (the worker is draining: each is refused)."""
        self._admit(everyone=True)

    def _admit(self, everyone: bool = False) -> None:
        self._scheduled = False
        while self.waiting and (everyone or self.limit <= 0 or self.in_flight < self.limit):
            turn = self.waiting.popleft()
            if self._queued is not None:
                self._queued.dec()
            if not turn.waiting_for_turn():
                continue  # its socket closed while it waited
            self.in_flight += 1
            turn.take_turn()
