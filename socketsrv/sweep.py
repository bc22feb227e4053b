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
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics
from socketsrv.protocol import frames

log = logging.getLogger(__name__)


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
    ) -> None:
        self._connections = connections
        self._hub = hub
        self._bus = bus
        self._metrics = metrics
        self._ping_interval_s = ping_interval_s
        self._interval_s = sweep_interval_s
        self._clock = clock
        self._ring: list[ClientConnection] = []
        self._ring_pos = 0
        self._ring_share = 1

    async def run(self) -> None:
        """Sweep every ``sweep_interval_s`` until cancelled."""
        interval_s = self._interval_s
        while True:
            due = self._clock() + interval_s
            await asyncio.sleep(interval_s)
            now = self._clock()
            try:
                # Deadlines are judged at the time the sweep was due: a worker stalled past it
                # (a storm of handshakes) wakes here before it has read the sockets, where a
                # connect or a pong that came in time may be waiting.
                self.sweep(now, deadlines_at=min(now, due))
            except Exception:
                log.exception("sweep failed")

    def sweep(self, now: float, *, deadlines_at: float | None = None) -> None:
        """Visit the next share of connections, and expire idle channels.

        Every connection is visited once per half ``ping_interval_s``, spread over the sweeps
        of that period rather than all at once (a heartbeat round over 20,000 connections in
        one go would stall every delivery behind it for ~100 ms, bench qa_mix). A visit
        closes the connection if a deadline passed, else sends a heartbeat if the previous
        one was answered; so a client hears one at least every ``ping_interval_s``.
        Deadlines are judged at *deadlines_at* (default: *now*).
        """
        self._metrics.bus_live.set(1 if self._bus.live else 0)
        ring = self._ring
        if self._ring_pos >= len(ring):
            ring = self._ring = list(self._connections)
            self._ring_pos = 0
            visits_per_cycle = self._ping_interval_s / 2 / self._interval_s
            self._ring_share = max(1, math.ceil(len(ring) / max(1.0, visits_per_cycle)))
        judged_at = now if deadlines_at is None else deadlines_at
        start, end = self._ring_pos, self._ring_pos + self._ring_share
        self._ring_pos = end
        for conn in ring[start:end]:
            if conn.state is not ConnectionState.OPEN:
                continue
            session = conn.session
            code = session.deadline_passed(judged_at)
            if code is not None:
                conn.close_with(code)
            elif session.heartbeat_due():
                conn.push(frames.HEARTBEAT[conn.wire])
                session.heartbeat_sent(now)
        self._hub.expire_idle()
