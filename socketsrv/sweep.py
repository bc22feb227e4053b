"""The worker's one periodic task: heartbeats, connection deadlines and idle channels.

There is no timer per connection: every ``sweep_interval_s`` one sweep visits a share of the
connections (sending heartbeats, closing those whose deadline passed) and lets the hub drop
the bus channels idle for longer than their grace period. Time comes from the clock function
given to the sweeper, so tests drive it with a fake clock and call :meth:`Sweeper.sweep`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Collection

from herald_contract.bus import Bus
from socketsrv.connection import ClientConnection, ConnectionState
from socketsrv.expiry import ExpiryQueue
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics
from socketsrv.protocol import frames
from socketsrv.protocol.codes import CloseCode

log = logging.getLogger(__name__)

VISIT_TICKS = 10
"""Slices a sweep's share of the connections is visited in, one per tenth of a sweep."""


class Sweeper:
    """Visits every connection once per half ``ping_interval_s``, spread over the sweeps."""

    def __init__(
        self,
        *,
        connections: Collection[ClientConnection],
        hub: Hub,
        bus: Bus,
        metrics: Metrics,
        ping_interval_s: float,
        sweep_interval_s: float,
        clock: Callable[[], float],
        expiries: ExpiryQueue[ClientConnection] | None = None,
        after_sweep: Callable[[float], None] | None = None,
    ) -> None:
        """*after_sweep* runs at the end of every sweep with its time (the worker's load
        share: socketsrv/loadshare.py)."""
        self._connections = connections
        self._hub = hub
        self._bus = bus
        self._metrics = metrics
        self._interval_s = sweep_interval_s
        self._cycle_s = ping_interval_s / 2
        self._sweeps_per_cycle = max(1, math.floor(self._cycle_s / sweep_interval_s + 1e-9))
        self._clock = clock
        self._expiries: ExpiryQueue[ClientConnection] = expiries or ExpiryQueue()
        self._after_sweep = after_sweep
        self._ring: list[ClientConnection] = []
        self._ring_pos = 0
        self._ring_share = 1
        self._share_end: int | None = None
        """Where the ring's share of the sweep under way ends (None: between sweeps)."""
        self._cycle_start: float | None = None
        self.last_sweep_at: float | None = None
        """The clock when the last sweep ran (the health listener's sign that the loop turns)."""

    async def run(self) -> None:
        """Sweep every ``sweep_interval_s`` until cancelled, visiting the sweep's share of
        the connections in :data:`VISIT_TICKS` slices in between (:meth:`visit`)."""
        tick_s = self._interval_s / VISIT_TICKS
        ticks = 0
        while True:
            due = self._clock() + tick_s
            await asyncio.sleep(tick_s)
            now = self._clock()
            ticks += 1
            try:
                # Deadlines are judged at the time the tick was due: a worker stalled past it
                # (a storm of handshakes) wakes here before it has read the sockets, where a
                # connect or a pong that came in time may be waiting.
                if ticks % VISIT_TICKS:
                    self.visit(now, deadlines_at=min(now, due))
                else:
                    self.sweep(now, deadlines_at=min(now, due))
            except Exception:
                log.exception("sweep failed")

    def visit(self, now: float, *, deadlines_at: float | None = None) -> None:
        """Visit the next slice of this sweep's share of the connections (a tenth): the
        heartbeats of a sweep and the pongs that answer them come in ten small bursts
        rather than one (a sweep's share of 9,500 connections took 15 ms to write and its
        pongs twice that to read, in which time no publication was handed on)."""
        judged_at = now if deadlines_at is None else deadlines_at
        share_end = self._start_share(now, first_cycle=False)
        step = max(1, math.ceil(self._ring_share / VISIT_TICKS))
        self._visit_until(min(self._ring_pos + step, share_end), now, judged_at)

    def sweep(self, now: float, *, deadlines_at: float | None = None) -> None:
        """Close the connections whose token ran out, visit the next share of connections,
        and expire idle channels.

        Every connection is visited once per cycle of half ``ping_interval_s``, spread over
        the sweeps of the cycle rather than all at once (a heartbeat round over 20,000
        connections in one go would stall every delivery behind it for ~100 ms, bench
        qa_mix). A cycle lasts half an interval however few connections there are: a worker
        with 3 connections visits them once per cycle too, not once per sweep (issue 12,
        item 8: such a client heard a heartbeat every second). A visit closes the connection
        if a deadline passed, else sends a heartbeat if the previous one was answered; so a
        client hears about two per ``ping_interval_s``, and at least one. An unanswered
        heartbeat the client is still reading its way to (a backlog ahead of it, its TCP
        acknowledging more: ClientConnection.reading_toward_heartbeat) is given another
        ``pong_timeout_s`` instead of a 4002.

        Token expiries do not wait for the visit: every sweep closes (4004) the connections
        whose ``expires_at`` plus the leeway has passed, so within ``sweep_interval_s`` of it.
        Deadlines are judged at *deadlines_at* (default: *now*).
        """
        self.last_sweep_at = now
        self._metrics.bus_live.set(1 if self._bus.live else 0)
        judged_at = now if deadlines_at is None else deadlines_at
        for conn in self._expiries.due(judged_at):
            if conn.state is ConnectionState.OPEN:
                conn.close_with(CloseCode.TOKEN_EXPIRED)
        self._visit_until(self._start_share(now), now, judged_at)
        self._share_end = None  # the next visit or sweep starts the next share
        self._hub.expire_idle()
        if self._after_sweep is not None:
            self._after_sweep(now)

    def _start_share(self, now: float, *, first_cycle: bool = True) -> int:
        """Start the next sweep's share of the ring unless one is under way (and a new cycle
        first, when the ring is done and half a ping interval has passed; the worker's first
        cycle only if *first_cycle*: it starts at the first sweep, as it did before visits
        were sliced, not a tenth of a sweep after the start); where it ends."""
        if self._share_end is not None:
            return self._share_end
        if self._ring_pos >= len(self._ring):
            if not self._cycle_over(now) or (self._cycle_start is None and not first_cycle):
                return self._ring_pos
            self._ring = list(self._connections)
            self._ring_pos = 0
            self._ring_share = max(1, math.ceil(len(self._ring) / self._sweeps_per_cycle))
            self._cycle_start = now
        self._share_end = min(self._ring_pos + self._ring_share, len(self._ring))
        return self._share_end

    def _visit_until(self, end: int, now: float, judged_at: float) -> None:
        """Visit the ring's connections up to *end*: close those past a deadline, send a
        heartbeat to those whose last one was answered."""
        start = self._ring_pos
        if end <= start:
            return
        self._ring_pos = end
        for conn in self._ring[start:end]:
            if conn.state is not ConnectionState.OPEN:
                continue
            session = conn.session
            code = session.deadline_passed(judged_at)
            if code is CloseCode.NO_PONG and conn.reading_toward_heartbeat():
                session.heartbeat_delayed(now)  # slow, not dead: it reads toward the heartbeat
                self._metrics.heartbeats_delayed.inc()
            elif code is not None:
                conn.close_with(code)
            elif session.heartbeat_due():
                conn.send_heartbeat(frames.HEARTBEAT[conn.wire])
                session.heartbeat_sent(now)

    def _cycle_over(self, now: float) -> bool:
        """Whether half a ping interval has passed since the cycle began (less half a sweep
        interval, so that the sweep that ends a cycle on time is not put off by jitter)."""
        start = self._cycle_start
        return start is None or now - start >= self._cycle_s - self._interval_s / 2
