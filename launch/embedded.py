"""Embedded mode: the Q&A core and one socket worker in one process, on the in-process bus.

    python -m launch.embedded [--port 8080] [--socket-port 8000] [--demo] [--no-prober]

This is the one program where the Q&A core and the fleet share an event loop: on embedded
defaults there is no Redis between the two, so the relay hands events to the worker's own
:class:`herald_contract.memory_bus.MemoryBus`. ``--demo`` also runs :func:`launch.demo.run_demo`
on that bus. Unless ``--no-prober``, the end-to-end prober (:mod:`launch.prober`) runs here too:
it publishes its probes on that bus and connects to the worker's port (``HERALD_PROBE_URL``
when set), with its ``/metrics`` on ``HERALD_PROBE_METRICS_PORT`` (9102); when that port is
taken, one line says the prober is not started and the rest runs without it. The HTTP publish
API (:mod:`publish_api`) runs here too, on ``HERALD_API_PORT`` (8090, loopback) and the same
bus, with a development key in the data directory unless ``HERALD_API_KEYS`` is set; when its
port is taken, one line says so and the rest runs without it.

The worker verifies connection tokens with the Q&A core's public key (generated into the data
directory on first run). Settings: ``HERALD_QA_*`` for the Q&A core, ``HERALD_*`` for the
socket worker, as in their own commands; ``--port`` / ``--socket-port`` win over
``HERALD_QA_PORT`` / ``HERALD_PORT``, and the pages' socket URL and the public base URL follow
the ports unless ``HERALD_QA_SOCKET_URL`` / ``HERALD_QA_PUBLIC_BASE_URL`` are set. A setting
that cannot work or a port in use ends it with one line on stderr and a non-zero exit code.
With ``HERALD_REDIS_URL`` set, run :mod:`launch.system` instead (separate processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from herald_contract.config import (
    SettingsError,
    cannot_bind,
    configure_logging,
    uvicorn_log_config,
)
from herald_contract.memory_bus import MemoryBus
from launch.demo import run_demo
from launch.prober import ProberSettings, metrics_port_taken, prober_settings, running_prober
from launch.settings import build_settings, fleet_url, launcher_parser, ports_taken
from publish_api.__main__ import DEV_KEY_FILE, build_server, checked_settings, development_keys
from publish_api.settings import ApiSettings
from publish_api.targets import BusTarget
from qasite.api.server import server_options
from qasite.core.keys import with_secrets
from qasite.core.settings import Settings
from qasite.domain.relay import PackedBusSink
from qasite.main import create_app
from socketsrv.metrics import build_metrics
from socketsrv.settings import Settings as SocketSettings
from socketsrv.worker import Worker


@dataclass(slots=True)
class EmbeddedSystem:
    """A started worker and the Q&A server sharing one in-process bus."""

    qa_settings: Settings
    worker: Worker
    bus: MemoryBus
    server: uvicorn.Server
    server_task: asyncio.Future[None]
    api: ApiServer | None = None

    def banner(self) -> str:
        s, w = self.qa_settings, self.worker
        ws = f"ws://{w.settings.host}:{w.port}/ws"
        http = f"http://{s.host}:{s.port}"
        return "\n".join(
            [
                "Herald embedded: Q&A core + socket worker in one process (SQLite, in-process bus)",
                f"  site:       {http}/   (live pages)",
                f"  Q&A API:    {http}/docs   (OpenAPI at {http}/openapi.json)",
                f"  mailbox:    {http}/dev/mailbox   (ON, loopback clients only: every "
                "verification link; HERALD_QA_DEV_MAILBOX=false turns it off)"
                if s.serves_dev_mailbox and s.smtp_host is None
                else "  mailbox:    off",
                f"  websocket:  {ws}   (token from POST {http}/api/socket-token)",
                f"  data:       {s.data_dir.resolve()}",
                *([self.api.banner_line(s.data_dir)] if self.api is not None else []),
            ]
        )


@dataclass(slots=True)
class ApiServer:
    """The publish API's server on the embedded bus, and the port it got."""

    settings: ApiSettings
    server: uvicorn.Server
    task: asyncio.Future[None]
    port: int

    def banner_line(self, data_dir: Path) -> str:
        key = (
            f"key in {(data_dir / DEV_KEY_FILE).resolve()}"
            if (data_dir / DEV_KEY_FILE).exists() and [n for n, _ in self.settings.keys] == ["dev"]
            else "keys from HERALD_API_KEYS"
        )
        return (
            f"  publish API: http://{self.settings.host}:{self.port}/api/   (OpenAPI at"
            f" /openapi.json; {key}; docs/publish-api.md)"
        )


async def _started(
    server: uvicorn.Server, what: str, sockets: list[socket.socket] | None = None
) -> asyncio.Future[None]:
    """*server* serving in a task (on *sockets* when given), once it listens."""
    task = asyncio.ensure_future(server.serve(sockets))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError(f"{what} did not start")
        await asyncio.sleep(0.02)
    return task


async def start_api(settings: ApiSettings, bus: MemoryBus) -> ApiServer:
    """The publish API on *bus* (returns once it listens). Raises OSError when its address
    cannot be bound: the socket is bound here, because uvicorn would end the process."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((settings.host, settings.port))
    except OSError:
        listener.close()
        raise
    server = build_server(settings, BusTarget(bus, settings.namespaces()))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = await _started(server, "the publish API", [listener])
    return ApiServer(settings, server, task, int(listener.getsockname()[1]))


async def start_embedded(
    qa_settings: Settings, socket_settings: SocketSettings, api_settings: ApiSettings | None = None
) -> EmbeddedSystem:
    """Start the worker, then the Q&A server, and with *api_settings* the publish API on the
    same bus (returns once all listen)."""
    qa_settings = with_secrets(qa_settings)
    if qa_settings.dev_mailbox is None and qa_settings.is_development:
        qa_settings = qa_settings.replace(dev_mailbox=True)  # unless set: the banner says so
    socket_settings = socket_settings.replace(
        redis_url=None,
        jwt_public_key_pem=qa_settings.socket_public_key_pem,
        jwt_audience=qa_settings.socket_token_audience,
        jwt_issuer=qa_settings.socket_token_issuer,
    )
    bus = MemoryBus(
        history_size=socket_settings.history_size,
        history_ttl_s=socket_settings.history_ttl_s,
        meta_ttl_s=socket_settings.meta_ttl_s,
        idempotency_ttl_s=socket_settings.idempotency_ttl_s,
        kind_retention=socket_settings.namespaces().retention(),
    )
    worker = Worker(socket_settings, bus=bus, metrics=build_metrics())
    await worker.start()
    app = create_app(qa_settings, sink=PackedBusSink(bus))
    config = uvicorn.Config(
        app,
        host=qa_settings.host,
        port=qa_settings.port,
        log_config=uvicorn_log_config("WARNING"),
        **server_options(qa_settings),
    )
    server = uvicorn.Server(config)
    # Signals are this module's to handle (run_embedded drains the worker after the server).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    server_task = await _started(server, "the Q&A server")
    api = None
    if api_settings is not None:
        try:
            api = await start_api(api_settings, bus)
        except OSError as exc:  # taken since main() checked it: the rest runs without it
            print(
                "launch.embedded: the publish API is not started: cannot listen on"
                f" {api_settings.host}:{api_settings.port} (HERALD_API_PORT): {exc.strerror}",
                file=sys.stderr,
                flush=True,
            )
    return EmbeddedSystem(qa_settings, worker, bus, server, server_task, api)


async def stop_embedded(system: EmbeddedSystem) -> None:
    if system.api is not None:
        system.api.server.should_exit = True
        await system.api.task
    system.server.should_exit = True
    await system.server_task
    await system.worker.drain()


async def run_embedded(
    qa_settings: Settings,
    socket_settings: SocketSettings,
    print_fn: Callable[[str], None],
    *,
    demo: bool = False,
    prober: ProberSettings | None = None,
    api: ApiSettings | None = None,
) -> None:
    """Run until SIGINT or SIGTERM; with *demo*, publish demo events on the in-process bus;
    with *prober*, probe delivery through that bus and the worker's websockets."""
    import signal

    system = await start_embedded(qa_settings, socket_settings, api)
    print_fn(system.banner())
    demo_task = asyncio.ensure_future(run_demo(PackedBusSink(system.bus).publish)) if demo else None
    async with contextlib.AsyncExitStack() as probing:
        if prober is not None:
            if prober.url == fleet_url(socket_settings.host, socket_settings.port):
                # The worker's own URL follows the port it got (--socket-port 0).
                prober = prober.replace(url=fleet_url(socket_settings.host, system.worker.port))
            await probing.enter_async_context(
                running_prober(prober, PackedBusSink(system.bus).publish)
            )
            print_fn(
                f"  prober:     {prober.connections} connections to {prober.url}, "
                f"{prober.channel}; /metrics on port {prober.metrics_port}"
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    if demo_task is not None:
        demo_task.cancel()
        await asyncio.gather(demo_task, return_exceptions=True)
    await stop_embedded(system)


def _parser() -> argparse.ArgumentParser:
    parser = launcher_parser("python -m launch.embedded", __doc__, fleet="the socket worker")
    parser.add_argument(
        "--demo", action="store_true", help="publish demo events (question:1, questions:new)"
    )
    parser.add_argument("--no-prober", action="store_true", help="do not run the end-to-end prober")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        qa_settings, socket_settings = build_settings(
            os.environ, port=args.port, socket_port=args.socket_port
        )
        qa_settings = with_secrets(qa_settings)
        url = fleet_url(socket_settings.host, socket_settings.port)
        prober = None if args.no_prober else prober_settings(os.environ, url=url)
        api: ApiSettings | None = checked_settings(
            development_keys(os.environ, qa_settings.data_dir)
        )
    except SettingsError as exc:
        print(f"launch.embedded: {exc}", file=sys.stderr)
        return 2
    if (taken := ports_taken(qa_settings, socket_settings)) is not None:
        print(f"launch.embedded: {taken}", file=sys.stderr)
        return 1
    if prober is not None and (taken := metrics_port_taken(prober)) is not None:
        print(f"launch.embedded: the prober is not started: {taken}", file=sys.stderr)
        prober = None
    if api is not None and (why := cannot_bind(api.host, api.port)) is not None:
        print(
            f"launch.embedded: the publish API is not started: cannot listen on"
            f" {api.host}:{api.port} (HERALD_API_PORT): {why}",
            file=sys.stderr,
        )
        api = None
    configure_logging(qa_settings.log_level)
    asyncio.run(
        run_embedded(
            qa_settings,
            socket_settings,
            lambda text: print(text, flush=True),
            demo=args.demo,
            prober=prober,
            api=api,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
