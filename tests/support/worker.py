"""Run a real socketsrv worker inside the test's event loop, on a free loopback port.

Beside it: its URL, the samples of its metrics, and publishing on its bus.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from herald_contract.bus import Bus
from herald_contract.envelope import pack_data
from socketsrv.buses import build_bus
from socketsrv.metrics import build_metrics
from socketsrv.settings import Settings
from socketsrv.worker import Worker

FAST = {
    "port": 0,
    "ping_interval_s": 0.3,
    "pong_timeout_s": 0.3,
    "connect_timeout_s": 0.5,
    "sweep_interval_s": 0.05,
    "unsubscribe_grace_s": 0.2,
    "close_timeout_s": 0.5,
    "drain_timeout_s": 5.0,
    "drain_batch_interval_s": 0.01,
    "reconnect_spread_s": 0.05,
}
"""Time scaled down so that heartbeat and timeout tests take a fraction of a second."""


@contextlib.asynccontextmanager
async def running_worker(bus: Bus | None = None, **overrides: Any) -> AsyncIterator[Worker]:
    settings = Settings(**{**FAST, **overrides})
    metrics = build_metrics()
    worker = Worker(settings, bus=bus or build_bus(settings, metrics), metrics=metrics)
    await worker.start()
    await worker.bus_started()
    try:
        yield worker
    finally:
        await worker.stop()


def ws_url(worker: Worker) -> str:
    return f"ws://127.0.0.1:{worker.port}/ws"


def metric(worker: Worker, name: str, **labels: str) -> float:
    """The current value of one sample of the worker's registry (0 when absent)."""
    value = worker.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def disconnects_counted(worker: Worker, code: int) -> float:
    return metric(worker, "herald_disconnects_total", code=str(code))


def handshake_rejections(worker: Worker, reason: str) -> float:
    return metric(worker, "herald_handshake_rejections_total", reason=reason)


async def publish(worker: Worker, channel: str, data: Any) -> int:
    """Publish one item on the worker's bus; its offset."""
    return (await worker.bus.publish(channel, pack_data(data))).position.offset
