"""Embedded mode: the Q&A core and one socket worker in one process, on the in-process bus.

    python -m launch.embedded      # SQLite in .herald-data/, no Redis, no servers

**This is the one module of ``publisher`` that imports ``socketsrv``**, on purpose: on
embedded defaults there is no Redis between the two, so the relay must hand events to the
worker's own :class:`herald_contract.memory_bus.MemoryBus` in the same event loop. Nothing else in
``publisher`` imports this module, so the publishing library stays free of the fleet.

The worker verifies connection tokens with the Q&A core's public key (generated into the data
directory on first run). Settings: ``HERALD_QA_*`` for the Q&A core (its port defaults to
8080), ``HERALD_*`` for the socket worker (port 8000), as in their own commands; with
``REDIS_URL`` set, run the two as separate processes instead (``herald-qa serve`` and
``herald-socketsrv``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from herald_contract.memory_bus import MemoryBus
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
    server: uvicorn.Server
    server_task: asyncio.Future[None]

    def banner(self) -> str:
        s, w = self.qa_settings, self.worker
        ws = f"ws://{w.settings.host}:{w.port}/ws"
        http = f"http://{s.host}:{s.port}"
        return "\n".join(
            [
                "Herald embedded: Q&A core + socket worker in one process (SQLite, in-process bus)",
                f"  site:       {http}/   (live pages)",
                f"  Q&A API:    {http}/docs   (OpenAPI at {http}/openapi.json)",
                f"  mailbox:    {http}/dev/mailbox   (verification links; no SMTP configured)",
                f"  websocket:  {ws}   (token from POST {http}/api/socket-token)",
                f"  data:       {s.data_dir.resolve()}",
            ]
        )


async def start_embedded(qa_settings: Settings, socket_settings: SocketSettings) -> EmbeddedSystem:
    """Start the worker, then the Q&A server (returns once both listen)."""
    qa_settings = with_secrets(qa_settings)
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
    )
    worker = Worker(socket_settings, bus=bus, metrics=build_metrics())
    await worker.start()
    app = create_app(qa_settings, sink=PackedBusSink(bus))
    config = uvicorn.Config(app, host=qa_settings.host, port=qa_settings.port, log_level="warning")
    server = uvicorn.Server(config)
    # Signals are this module's to handle (run_embedded drains the worker after the server).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    server_task = asyncio.ensure_future(server.serve())
    while not server.started:
        if server_task.done():
            await server_task
            raise RuntimeError("the Q&A server did not start")
        await asyncio.sleep(0.02)
    return EmbeddedSystem(qa_settings, worker, server, server_task)


async def stop_embedded(system: EmbeddedSystem) -> None:
    system.server.should_exit = True
    await system.server_task
    await system.worker.drain()


async def run_embedded(
    qa_settings: Settings, socket_settings: SocketSettings, print_fn: Callable[[str], None]
) -> None:
    """Run until SIGINT or SIGTERM."""
    import signal

    system = await start_embedded(qa_settings, socket_settings)
    print_fn(system.banner())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_embedded(system)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    qa_settings = Settings.from_env(os.environ)
    socket_settings = SocketSettings.from_env(os.environ)
    asyncio.run(run_embedded(qa_settings, socket_settings, lambda text: print(text, flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
