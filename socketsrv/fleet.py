"""Run one worker in this process, or supervise N worker processes sharing one port.

With ``workers > 1`` the supervisor binds the port once with SO_REUSEPORT (to resolve port 0
and hold it), starts each worker in its own process (``spawn``, so nothing of the parent's
event loop leaks in), and the kernel spreads new connections over the workers' sockets.
prometheus-client runs in multiprocess mode so any worker's ``/metrics`` reports the fleet.
With ``metrics_port`` set, ``/metrics`` answers 404 on the public port and is served on
``metrics_host:metrics_port`` instead: by the worker itself when it runs alone, by the
supervisor (summing the workers' files) with a fleet.

Signals: SIGTERM or SIGINT makes every worker drain (docs/protocol.md, close 4000 with a
reconnect hint): ``/readyz`` turns 503 at once, the port keeps accepting for
``drain_grace_s`` (for load balancers that only health-check), then closes and the
connections are closed in batches. A second SIGTERM or SIGINT ends the grace at once. The
supervisor waits ``drain_grace_s`` plus ``drain_timeout_s`` plus a margin, then kills what is
left. A worker that dies on its own is started again after a short backoff.

Load: the supervisor shares an array of the workers' connection counts with them (shared
memory, socketsrv/loadshare.py); a worker holding clearly more than its share closes a
bounded part of its connections with 4007 and a reconnect hint, so that a replacement worker
does not stay empty while a survivor holds every client (``rebalance_*`` settings).

A port that cannot be bound raises :class:`StartupError` (one line naming the address and
``HERALD_PORT``), never a traceback. The supervisor's socket sets SO_REUSEADDR as asyncio's
do, so a fleet restarted right after a previous run binds while old connections sit in
TIME_WAIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, MutableSequence
from multiprocessing.process import BaseProcess

from herald_contract.config import configure_logging as configure_log_format
from herald_contract.metrics_listener import MetricsListener, MetricsPortUnavailable
from socketsrv.errors import SocketsrvError
from socketsrv.loadshare import NOT_RUNNING, new_slots
from socketsrv.metrics import MULTIPROC_ENV
from socketsrv.settings import Settings

log = logging.getLogger(__name__)

Ready = Callable[[int], None]
Slot = tuple[MutableSequence[int], int]
"""The fleet's shared connection counts and this worker's index in them (loadshare.py)."""


class StartupError(SocketsrvError):
    """The fleet cannot start (a port in use); the message is the one line to show."""


def _cannot_listen(settings: Settings, exc: OSError) -> StartupError:
    why = os.strerror(exc.errno) if exc.errno else str(exc)  # uvloop's text names no port
    if isinstance(exc, MetricsPortUnavailable):
        return StartupError(
            f"cannot listen on {settings.metrics_host}:{settings.metrics_port}"
            f" (HERALD_METRICS_HOST / HERALD_METRICS_PORT): {why}"
        )
    return StartupError(
        f"cannot listen on {settings.host}:{settings.port} (HERALD_PORT / --port): {why}"
    )


def run_single(settings: Settings, on_ready: Ready | None = None, slot: Slot | None = None) -> None:
    """Run one worker in this process until SIGTERM or SIGINT, then drain.

    *slot*: the worker's place among the fleet's connection counts (it then sheds load past
    its share). Raises :class:`StartupError` when the port cannot be bound.
    """
    import uvloop

    uvloop.run(_serve(settings, reuse_port=settings.workers > 1, on_ready=on_ready, slot=slot))


async def _serve(
    settings: Settings, *, reuse_port: bool, on_ready: Ready | None, slot: Slot | None = None
) -> None:
    from prometheus_client import disable_created_metrics

    from socketsrv import gc_policy
    from socketsrv.buses import build_bus
    from socketsrv.heap import HeapTrim
    from socketsrv.loadshare import LoadShare
    from socketsrv.metrics import build_metrics
    from socketsrv.worker import Worker

    disable_created_metrics()  # type: ignore[no-untyped-call]  # _created doubles the series
    metrics = build_metrics()
    share = None
    if slot is not None and settings.rebalance_interval_s > 0:
        share = LoadShare(
            *slot,
            interval_s=settings.rebalance_interval_s,
            tolerance=settings.rebalance_tolerance,
            share=settings.rebalance_share,
        )
    worker = Worker(
        settings,
        bus=build_bus(settings, metrics),
        metrics=metrics,
        reuse_port=reuse_port,
        load_share=share,
    )
    try:
        await worker.start()
    except OSError as exc:
        await worker.bus.close()
        raise _cannot_listen(settings, exc) from None
    # Everything alive now (modules, the worker) lives as long as the process: keep it out of
    # every later full collection, whose pauses would otherwise grow with it; and so with the
    # survivors of each full collection from now on (socketsrv/gc_policy.py).
    gc.freeze()
    gc_policy.install()
    # Freed heap goes back to the system after any burst, not only after paced replays.
    heap = HeapTrim()
    heap.every()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            worker.end_grace()  # a second signal: stop accepting now
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if on_ready is not None:
        on_ready(worker.port)
    await stop.wait()
    heap.cancel()
    log.info("draining %d connections", len(worker.connections))
    await worker.drain()


def configure_logging(settings: Settings, tag: str = "") -> None:
    """Herald's one log format; websockets' own per-frame chatter stays quiet (a connection's
    open and close are logged by socketsrv.connection at DEBUG)."""
    configure_log_format(settings.log_level, tag)
    logging.getLogger("socketsrv.ws").setLevel(logging.WARNING)


def _worker_main(settings: Settings, index: int, slots: MutableSequence[int]) -> None:
    configure_logging(settings, f"w{index} ")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM drains
    try:
        run_single(settings, slot=(slots, index))
    except StartupError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


def _reserve_port(settings: Settings) -> socket.socket:
    """The fleet's port, bound (not listening) so that port 0 resolves and the port is held.

    Raises :class:`StartupError` when it is taken.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise _cannot_listen(settings, exc) from None
    return sock


def run_fleet(settings: Settings, *, print_fn: Callable[[str], None] = print) -> int:
    """Supervise ``settings.workers`` processes until SIGTERM/SIGINT; return an exit code.

    Raises :class:`StartupError` when the port cannot be bound.
    """
    reserved = _reserve_port(settings)
    port = int(reserved.getsockname()[1])
    multiproc_dir = tempfile.mkdtemp(prefix="herald-metrics-")
    os.environ[MULTIPROC_ENV] = multiproc_dir  # read by prometheus-client in the children
    listener: MetricsListener | None = None
    if settings.metrics_port is not None:
        try:  # the supervisor answers /metrics for every worker, summed from their files
            listener = MetricsListener.start(
                settings.metrics_host, settings.metrics_port, lambda: _fleet_render(multiproc_dir)
            )
        except MetricsPortUnavailable as exc:
            reserved.close()
            shutil.rmtree(multiproc_dir, ignore_errors=True)
            raise _cannot_listen(settings, exc) from None
    worker_settings = settings.replace(port=port, metrics_multiproc_dir=multiproc_dir)
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, BaseProcess] = {}
    slots = new_slots(ctx, settings.workers)  # each worker's connection count (loadshare.py)

    def start(index: int) -> None:
        slots[index] = NOT_RUNNING  # a dead worker's clients are elsewhere now
        proc = ctx.Process(target=_worker_main, args=(worker_settings, index, slots), daemon=False)
        proc.start()
        procs[index] = proc

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            _terminate(procs)  # a second signal: the workers end their drain's grace
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(settings.workers):
        start(i)
    print_fn(_banner(settings, port))
    try:
        while not stopping:
            time.sleep(0.2)
            for i, proc in list(procs.items()):
                if not proc.is_alive() and not stopping:
                    log.error("worker %d exited with %s; restarting", i, proc.exitcode)
                    _mark_dead(proc)
                    slots[i] = NOT_RUNNING
                    time.sleep(0.5)
                    start(i)
        _terminate(procs)
        deadline = time.monotonic() + settings.drain_grace_s + settings.drain_timeout_s + 5.0
        for proc in procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        return 0
    finally:
        if listener is not None:
            listener.close()
        reserved.close()
        shutil.rmtree(multiproc_dir, ignore_errors=True)


def _fleet_render(multiproc_dir: str) -> bytes:
    """The sum over the workers (their multiprocess files), as a worker's /metrics gives."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(reg)


def _terminate(procs: dict[int, BaseProcess]) -> None:
    """SIGTERM to every worker: the first makes it drain, the next ends the drain's grace."""
    for proc in list(procs.values()):
        if proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)


def _mark_dead(proc: BaseProcess) -> None:
    from prometheus_client import multiprocess

    if proc.pid is not None:
        multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]


def _banner(settings: Settings, port: int) -> str:
    host = settings.host
    bus = settings.redis_url or "in-process bus (embedded default)"
    return "\n".join(
        [
            f"Herald socket fleet: {settings.workers} worker(s) on {host}:{port}, bus: {bus}",
            f"  websocket:  ws://{host}:{port}/ws"
            "   (subprotocols herald.v1.json, herald.v1.msgpack)",
            f"  health:     {_health_url(settings, port)}",
            f"  metrics:    {_metrics_url(settings, port)}",
            "  try it:     .venv/bin/python -m websockets ws://" + f"{host}:{port}/ws",
            '              then type {"op":"connect","id":1}',
            '              and       {"op":"subscribe","id":2,"channel":"question:1"}',
        ]
    )


def _health_url(settings: Settings, port: int) -> str:
    if settings.health_port is None:
        return f"http://{settings.host}:{port}/healthz   http://{settings.host}:{port}/readyz"
    base = f"http://{settings.health_host}:{settings.health_port}"
    return f"{base}/healthz   {base}/readyz   (own listener)"


def _metrics_url(settings: Settings, port: int) -> str:
    if settings.metrics_port is None:
        return f"http://{settings.host}:{port}/metrics"
    return f"http://{settings.metrics_host}:{settings.metrics_port}/metrics   (own listener)"


def serve(settings: Settings, *, print_fn: Callable[[str], None] = print) -> int:
    """Entry point: one worker in-process, or a supervised fleet.

    Raises :class:`StartupError` when the port cannot be bound.
    """
    if settings.workers == 1:
        run_single(settings, on_ready=lambda port: print_fn(_banner(settings, port)))
        return 0
    return run_fleet(settings, print_fn=print_fn)
