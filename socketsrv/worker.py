"""One worker process: a listening socket, its connections, a hub and a bus subscription.

Lifecycle::

    Worker(settings, bus, metrics) --start()--> SERVING --drain()--> DRAINING --> STOPPED

``start`` connects the bus and listens (with SO_REUSEPORT when several workers share the
port). One shared sweep task per worker sends heartbeats every ``ping_interval_s``, closes
connections whose deadline passed, and unsubscribes idle channels; there is no timer per
connection. ``drain`` stops accepting, closes connections in batches with 4000 and a random
reconnect hint, and returns once they are gone or ``drain_timeout_s`` has passed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import socket
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.http11 import Request, Response

from herald_contract.bus import Bus
from socketsrv.connection import (
    ClientConnection,
    ConnectionConfig,
    ConnectionHost,
    WriteScheduler,
    http_response,
)
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics, render
from socketsrv.protocol import frames
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.session import Limits
from socketsrv.settings import Settings

log = logging.getLogger(__name__)


class WorkerState(enum.Enum):
    CREATED = "created"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"


class WrongWorkerState(RuntimeError):
    def __init__(self, action: str, state: WorkerState) -> None:
        super().__init__(f"cannot {action} a worker in state {state.value}")


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_subscriptions=settings.max_subscriptions,
        commands_per_s=settings.commands_per_s,
        commands_burst=settings.commands_burst,
        flood_refusals=settings.flood_refusals,
        ping_interval_s=settings.ping_interval_s,
        pong_timeout_s=settings.pong_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        allow_anonymous=settings.allow_anonymous,
    )


def verifier_of(settings: Settings) -> TokenVerifier | None:
    if settings.jwt_public_key_pem is None:
        return None
    return TokenVerifier(
        settings.jwt_public_key_pem,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus,
        metrics: Metrics,
        reuse_port: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.metrics = metrics
        self.state = WorkerState.CREATED
        self._reuse_port = reuse_port
        self._clock = clock
        self._wall_clock = wall_clock
        self.hub = Hub(
            bus,
            metrics=metrics,
            history_limit=settings.history_size,
            unsubscribe_grace_s=settings.unsubscribe_grace_s,
            clock=clock,
        )
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._host: ConnectionHost | None = None
        self._ring: list[ClientConnection] = []
        self._ring_pos = 0
        self._ring_share = 1

    @property
    def connections(self) -> set[ClientConnection]:
        return set() if self._host is None else self._host.connections

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise WrongWorkerState("ask the port of", self.state)
        return int(self._server.sockets[0].getsockname()[1])

    def _open_transports(self) -> int:
        return 0 if self._host is None else self._host.transports

    def is_ready(self) -> bool:
        return self.state is WorkerState.SERVING and self.bus.live

    async def start(self) -> None:
        if self.state is not WorkerState.CREATED:
            raise WrongWorkerState("start", self.state)
        loop = asyncio.get_running_loop()
        s = self.settings
        await self.bus.start(self.hub)
        self.metrics.bus_live.set(1 if self.bus.live else 0)
        config = ConnectionConfig(
            origins=s.origins,
            max_frame_bytes=s.max_frame_bytes,
            outbox_max_bytes=s.outbox_max_bytes,
            compression=s.compression,
            close_timeout_s=s.close_timeout_s,
            max_connections=s.max_connections,
            limits=limits_of(s),
        )
        host = ConnectionHost(
            config=config,
            hub=self.hub,
            metrics=self.metrics,
            verifier=verifier_of(s),
            scheduler=WriteScheduler(loop, self.metrics),
            http=self._http,
            connections=set(),
            clock=self._clock,
            wall_clock=self._wall_clock,
        )
        self._host = host
        self._server = await loop.create_server(
            lambda: ClientConnection(host),
            host=s.host,
            port=s.port,
            reuse_port=self._reuse_port or None,
            backlog=4096,
        )
        for sock in self._server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())
        self.state = WorkerState.SERVING

    def _http(self, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return http_response(200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            ready = self.is_ready()
            return http_response(
                200 if ready else 503,
                b"ready\n" if ready else b"not ready\n",
                "text/plain; charset=utf-8",
            )
        if path == "/metrics":
            body = render(self.metrics, self.settings.metrics_multiproc_dir)
            return http_response(200, body, CONTENT_TYPE_LATEST)
        return None

    async def _sweep_forever(self) -> None:
        interval_s = self.settings.sweep_interval_s
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
        """Visit the next share of connections, and unsubscribe idle channels.

        Every connection is visited once per half ``ping_interval_s``, spread over the sweeps
        of that period rather than all at once (a heartbeat round over 20,000 connections in
        one go would stall every delivery behind it for ~100 ms, bench qa_mix). A visit
        closes the connection if a deadline passed, else sends a heartbeat if the previous
        one was answered; so a client hears one at least every ``ping_interval_s``.
        Deadlines are judged at *deadlines_at* (default: *now*).
        """
        self.metrics.bus_live.set(1 if self.bus.live else 0)
        ring = self._ring
        if self._ring_pos >= len(ring):
            ring = self._ring = list(self.connections)
            self._ring_pos = 0
            visits_per_cycle = self.settings.ping_interval_s / 2 / self.settings.sweep_interval_s
            self._ring_share = max(1, math.ceil(len(ring) / max(1.0, visits_per_cycle)))
        judged_at = now if deadlines_at is None else deadlines_at
        start, end = self._ring_pos, self._ring_pos + self._ring_share
        self._ring_pos = end
        for conn in ring[start:end]:
            session = conn.session
            if session is None or conn.closing:
                continue
            code = session.deadline_passed(judged_at)
            if code is not None:
                conn.close_with(code)
            elif session.heartbeat_due():
                conn.push(frames.HEARTBEAT[conn.wire])
                session.heartbeat_sent(now)
        self.hub.sweep()

    async def drain(self) -> None:
        """Stop accepting, close connections in batches with 4000, then stop the bus."""
        if self.state is not WorkerState.SERVING:
            raise WrongWorkerState("drain", self.state)
        self.state = WorkerState.DRAINING
        s = self.settings
        deadline = self._clock() + s.drain_timeout_s
        if self._host is not None:
            self._host.accepting = False
        if self._server is not None:
            self._server.close()
        pending = list(self.connections)
        random.shuffle(pending)
        while pending and self._clock() < deadline:
            batch, pending = pending[: s.drain_batch_size], pending[s.drain_batch_size :]
            for conn in batch:
                retry_ms = random.randint(0, int(s.reconnect_spread_s * 1000))
                conn.close_with(CloseCode.RESTART, f"restart retry_ms={retry_ms}")
            await asyncio.sleep(s.drain_batch_interval_s)
        while self._open_transports() and self._clock() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await self.stop()

    async def stop(self) -> None:
        """Stop at once (tests; the end of a drain)."""
        if self.state is WorkerState.STOPPED:
            return
        self.state = WorkerState.STOPPED
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)
        await self.hub.close()
        await self.bus.close()
        self.metrics.bus_live.set(0)
