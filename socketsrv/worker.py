"""One worker process: a listening socket, its connections, a hub and a bus subscription.

Lifecycle (:class:`WorkerState`)::

    Worker(settings, bus, metrics) --start()--> SERVING --drain()--> LEAVING (drain_grace_s)
                                                   --> DRAINING --> STOPPED

``start`` tries the bus once, then listens (with SO_REUSEPORT when several workers share
the port) whether or not the bus is live. A bus that did not start is retried in the
background with full-jitter backoff (herald_contract/backoff.py, one log line per failed
attempt): until it is live the worker is unready (``/readyz`` 503) and subscribes are refused
with 503, but it does not die, so an unreachable Redis no longer makes a supervisor restart
it over and over. One shared sweep task (socketsrv/sweep.py) sends heartbeats, closes
connections whose deadline passed and unsubscribes idle channels; there is no timer per
connection.

``drain`` first turns ``/readyz`` to 503 while still accepting and serving (LEAVING) for
``drain_grace_s``, so that a load balancer that only health-checks stops sending new
connections before the port refuses them; :meth:`Worker.end_grace` (a second SIGTERM) cuts
the grace short. It then stops accepting (DRAINING), closes connections in batches with 4000
and a random reconnect hint, and returns once they are gone or ``drain_timeout_s`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable

from herald_contract.backoff import Backoff, retry_until_done
from herald_contract.bus import Bus, BusUnavailable
from herald_contract.metrics_listener import MetricsListener
from socketsrv.connection import ClientConnection, ConnectionState
from socketsrv.endpoints import Endpoints
from socketsrv.errors import WrongState
from socketsrv.health import LOOP_STALL_S, HealthListener
from socketsrv.host import AcceptErrorLog, ConnectionConfig, ConnectionHost
from socketsrv.hub import Hub
from socketsrv.listener import Listener
from socketsrv.loadshare import LoadShare
from socketsrv.metrics import Metrics, render
from socketsrv.positions import PositionChecker
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.budget import AddressLimits
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.session import Limits
from socketsrv.settings import Settings
from socketsrv.sweep import Sweeper
from socketsrv.writes import WriteScheduler

log = logging.getLogger(__name__)


FIRST_BUS_ATTEMPT_S = 2.0
"""How long the attempt to start the bus before listening may take (a blackholed Redis)."""

BUS_START_BACKOFF = Backoff(base_s=0.1, cap_s=5.0)
"""Pauses between attempts to start the bus: full jitter from 0, the window doubling from
0.1 s to 5 s, so a fleet that met a down Redis does not knock on it in step."""


class WorkerState(enum.Enum):
    CREATED = "created"
    SERVING = "serving"
    LEAVING = "leaving"
    """Unready (``/readyz`` 503) but accepting and serving: the drain's grace."""
    DRAINING = "draining"
    STOPPED = "stopped"


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_subscriptions=settings.max_subscriptions,
        commands_per_s=settings.commands_per_s,
        commands_burst=settings.commands_burst,
        flood_refusals=settings.flood_refusals,
        replay_bytes_per_s=settings.replay_bytes_per_s,
        replay_burst_bytes=settings.replay_burst_bytes,
        ping_interval_s=settings.ping_interval_s,
        pong_timeout_s=settings.pong_timeout_s,
        connect_timeout_s=settings.connect_timeout_s,
        allow_anonymous=settings.allow_anonymous,
        telemetry_interval_s=settings.telemetry_interval_s,
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


def config_of(settings: Settings) -> ConnectionConfig:
    return ConnectionConfig(
        origins=settings.origins,
        max_frame_bytes=settings.max_frame_bytes,
        outbox_max_bytes=settings.outbox_max_bytes,
        compression=settings.compression,
        close_timeout_s=settings.close_timeout_s,
        max_connections=settings.max_connections,
        limits=limits_of(settings),
        max_connections_per_address=settings.max_connections_per_address,
        max_subscriptions_per_address=settings.max_subscriptions_per_address,
        proxy_protocol=settings.proxy_protocol,
        trusted_proxies=frozenset(settings.trusted_proxies),
        address_limit_exempt=settings.address_limit_exempt,
        fd_reserve=settings.fd_reserve,
        reconnect_spread_s=settings.reconnect_spread_s,
        conflate_mark_bytes=settings.conflate_mark,
        send_lowat_bytes=settings.send_lowat_bytes,
        namespaces=settings.namespaces(),
        max_handshakes=settings.max_handshakes,
        handshake_queue=settings.handshake_queue,
        address_limits=AddressLimits(
            connections_per_s=settings.address_connections_per_s,
            connections_burst=settings.address_connections_burst,
            commands_per_s=settings.address_commands_per_s,
            commands_burst=settings.address_commands_burst,
            replay_bytes_per_s=settings.address_replay_bytes_per_s,
            replay_burst_bytes=settings.address_replay_burst_bytes,
        ),
    )


class Worker:
    """One worker (see the module docstring); construction does no I/O."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus,
        metrics: Metrics,
        reuse_port: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        bus_backoff: Backoff | None = None,
        load_share: LoadShare | None = None,
    ) -> None:
        """*load_share*: this worker's slot among the fleet's (socketsrv/loadshare.py); None
        for a worker alone, which never sheds."""
        self.settings = settings
        self.bus = bus
        self.metrics = metrics
        self.state = WorkerState.CREATED
        self._reuse_port = reuse_port
        self._clock = clock
        self._wall_clock = wall_clock
        self._bus_backoff = bus_backoff or BUS_START_BACKOFF
        self._load_share = load_share
        self.hub = Hub(
            bus,
            metrics=metrics,
            history_limit=settings.history_settings().largest_history_size,
            unsubscribe_grace_s=settings.unsubscribe_grace_s,
            clock=clock,
            max_channels=settings.max_channels,
            namespaces=settings.namespaces(),
            retention=settings.history_settings().retention,
            wall_clock=wall_clock,
        )
        self._server: Listener | None = None
        self._host: ConnectionHost | None = None
        self._sweeper: Sweeper | None = None
        self._positions: PositionChecker | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._bus_started: asyncio.Future[None] | None = None
        self._grace_over = asyncio.Event()
        self.metrics_listener: MetricsListener | None = None
        self.health_listener: HealthListener | None = None
        """/healthz and /readyz on ``health_port``, answered by a thread (socketsrv/health.py)."""
        self._loop_turned_at = time.monotonic()
        """/metrics on ``metrics_port`` when this worker runs alone (a fleet's supervisor
        serves it for every worker, from the multiprocess directory)."""

    @property
    def connections(self) -> set[ClientConnection]:
        return set() if self._host is None else self._host.connections

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise WrongState("worker", "ask the port", self.state)
        return int(self._server.sockets[0].getsockname()[1])

    def open_transports(self) -> int:
        """Transports open now: connections, and sockets still in their handshake."""
        return 0 if self._host is None else self._host.transports

    def is_ready(self) -> bool:
        return self.state is WorkerState.SERVING and self.bus.live

    async def start(self) -> None:
        """Try the bus once, listen, and keep starting the bus in the background if it is
        not live yet (see the module docstring).

        Raises OSError when the port cannot be bound; the worker then stays CREATED.
        """
        if self.state is not WorkerState.CREATED:
            raise WrongState("worker", "start", self.state)
        loop = asyncio.get_running_loop()
        live = await self._start_bus_once()
        try:
            host = await self._listen(loop)
            self._listen_metrics()
            self._listen_health()
        except BaseException:
            if self._server is not None:
                self._server.close()
            await self.bus.close()
            raise
        s = self.settings
        self._sweeper = Sweeper(
            connections=host.connections,
            hub=self.hub,
            bus=self.bus,
            metrics=self.metrics,
            ping_interval_s=s.ping_interval_s,
            sweep_interval_s=s.sweep_interval_s,
            clock=self._clock,
            expiries=host.expiries,
            after_sweep=self._after_sweep,
        )
        self._tasks = [asyncio.ensure_future(self._sweeper.run())]
        if s.position_check_interval_s > 0:
            self._positions = PositionChecker(
                hub=self.hub,
                bus=self.bus,
                metrics=self.metrics,
                interval_s=s.position_check_interval_s,
            )
            self._tasks.append(asyncio.ensure_future(self._positions.run()))
        self._bus_started = loop.create_future()
        # Retrieved here so that a start nobody waits for does not log "never retrieved".
        self._bus_started.add_done_callback(lambda f: f.cancelled() or f.exception())
        if live:
            self._bus_started.set_result(None)
        else:
            self._tasks.append(asyncio.ensure_future(self._keep_starting_bus(self._bus_started)))
        self.state = WorkerState.SERVING

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> ConnectionHost:
        s = self.settings
        host = ConnectionHost(
            config=config_of(s),
            hub=self.hub,
            metrics=self.metrics,
            verifier=verifier_of(s),
            scheduler=WriteScheduler(loop, self.metrics),
            http=Endpoints(
                self.is_ready,
                self.metrics,
                s.metrics_multiproc_dir,
                metrics_elsewhere=s.metrics_port is not None,
            ),
            connections=set(),
            clock=self._clock,
            wall_clock=self._wall_clock,
        )
        host.measure_fds()
        if loop.get_exception_handler() is None:
            loop.set_exception_handler(AcceptErrorLog(self.metrics.accept_errors))
        # Not loop.create_server: uvloop's accepts one connection per loop turn
        # (socketsrv/listener.py).
        self._server = await Listener.open(
            loop,
            lambda: ClientConnection(host),
            s.host,
            s.port,
            reuse_port=self._reuse_port,
            backlog=4096,
        )
        self._host = host
        return host

    def _listen_metrics(self) -> None:
        s = self.settings
        if s.metrics_port is None or s.metrics_multiproc_dir is not None:
            return
        metrics = self.metrics
        self.metrics_listener = MetricsListener.start(
            s.metrics_host, s.metrics_port, lambda: render(metrics, None)
        )

    async def _start_bus_once(self) -> bool:
        """One bounded attempt before listening: whether the bus is live.

        A worker whose Redis answers is live before it accepts anyone, as it always was: with
        several workers on one port the kernel hands connections to any listening one, ready
        or not. An unreachable Redis delays listening by at most ``FIRST_BUS_ATTEMPT_S``.
        """
        try:
            async with asyncio.timeout(FIRST_BUS_ATTEMPT_S):
                await self.bus.start(self.hub)
        except (BusUnavailable, TimeoutError) as exc:
            why = str(exc) or f"no answer within {FIRST_BUS_ATTEMPT_S} s"
            log.warning("bus start failed (%s); serving unready, retrying in the background", why)
            self.metrics.bus_live.set(0)
            return False
        self.metrics.bus_live.set(1 if self.bus.live else 0)
        return True

    async def _keep_starting_bus(self, started: asyncio.Future[None]) -> None:
        try:
            _, attempts = await retry_until_done(
                lambda: self.bus.start(self.hub),
                self._bus_backoff,
                retry_on=(BusUnavailable,),  # an outage; anything else is a bug or a bad setting
                what="bus start retry",
            )
        except asyncio.CancelledError:
            started.cancel()
            raise
        except Exception as exc:
            log.exception("the bus cannot start; this worker stays unready")
            started.set_exception(exc)
            return
        self.metrics.bus_live.set(1 if self.bus.live else 0)
        self.hub.bus_started()  # connections told "paused" meanwhile hear "live"
        log.info("bus live after %d more attempt(s); the worker is ready", attempts)
        started.set_result(None)

    async def bus_started(self) -> None:
        """Return once the bus has started (tests; the worker serves without waiting).

        Raises what ended the start (CancelledError when the worker stopped first).
        """
        if self._bus_started is None:
            raise WrongState("worker", "wait for the bus", self.state)
        await asyncio.shield(self._bus_started)

    def _listen_health(self) -> None:
        s = self.settings
        if s.health_port is None:
            return
        self._loop_turned_at = time.monotonic()
        stall_s = max(LOOP_STALL_S, 3 * s.sweep_interval_s)
        self.health_listener = HealthListener.start(
            s.health_host,
            s.health_port,
            self.is_ready,
            lambda: self._loop_turned_at,
            stall_s=stall_s,
            reuse_port=self._reuse_port,
        )

    def _after_sweep(self, now: float) -> None:
        self._loop_turned_at = time.monotonic()  # the health listener's sign of a live loop
        connections = self.connections
        self.metrics.worker_connections.set(len(connections))
        self.hub.flush_counts()
        if self._load_share is not None and self.state is WorkerState.SERVING:
            self._load_share.tick(now, connections, ConnectionState.OPEN)

    def sweep(self, now: float, *, deadlines_at: float | None = None) -> None:
        """One sweep now (see :meth:`socketsrv.sweep.Sweeper.sweep`); tests drive time with it."""
        if self._sweeper is None:
            raise WrongState("worker", "sweep", self.state)
        self._sweeper.sweep(now, deadlines_at=deadlines_at)

    async def check_positions(self) -> bool:
        """One full round of position checks now (socketsrv/positions.py), if they are on.

        Returns whether checks are on (``position_check_interval_s`` above 0); tests and the
        dropped-message benchmark drive the checks with it.
        """
        if self.state is WorkerState.CREATED:
            raise WrongState("worker", "check positions", self.state)
        if self._positions is None:
            return False
        await self._positions.check_all()
        return True

    async def drain(self) -> None:
        """Turn unready for ``drain_grace_s`` (LEAVING), then stop accepting, close connections
        in batches with 4000, and stop the bus."""
        if self.state is not WorkerState.SERVING:
            raise WrongState("worker", "drain", self.state)
        s = self.settings
        if s.drain_grace_s > 0 and not self._grace_over.is_set():
            self.state = WorkerState.LEAVING
            log.info("unready; still accepting for drain_grace_s=%s s", s.drain_grace_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._grace_over.wait(), s.drain_grace_s)
            if self.state is not WorkerState.LEAVING:
                return  # stopped meanwhile
        self.state = WorkerState.DRAINING
        if self._load_share is not None:
            self._load_share.leave()  # the other workers stop counting this one
        deadline = self._clock() + s.drain_timeout_s
        if self._host is not None:
            self._host.accepting = False
            if self._host.admission is not None:
                self._host.admission.admit_all()  # each waiting request gets its 503
        if self._server is not None:
            self._server.close()
        pending = list(self.connections)
        random.shuffle(pending)
        while pending and self._clock() < deadline:
            batch, pending = pending[: s.drain_batch_size], pending[s.drain_batch_size :]
            for conn in batch:
                conn.close_with(CloseCode.RESTART)  # with its retry_ms hint
            await asyncio.sleep(s.drain_batch_interval_s)
        while self.open_transports() and self._clock() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        await self.stop()

    def end_grace(self) -> None:
        """End the drain's grace now (a second SIGTERM); before a drain, skip it. Idempotent."""
        self._grace_over.set()

    async def stop(self) -> None:
        """Stop at once (tests; the end of a drain)."""
        if self.state is WorkerState.STOPPED:
            return
        self.state = WorkerState.STOPPED
        self._grace_over.set()  # a drain waiting in its grace returns
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus_started is not None and not self._bus_started.done():
            self._bus_started.cancel()
        if self._server is not None:
            self._server.close()
        if self.metrics_listener is not None:
            await asyncio.to_thread(self.metrics_listener.close)
        if self.health_listener is not None:
            await asyncio.to_thread(self.health_listener.close)
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)
        await self.hub.close()
        self.hub.flush_counts()
        await self.bus.close()
        self.metrics.bus_live.set(0)
