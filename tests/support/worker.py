"""Run a real socketsrv worker inside the test's event loop, on a free loopback port.

Beside it: its URL, the samples of its metrics, publishing on its bus, and a
:class:`ManualClock` for the tests that drive the worker's time themselves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from herald_contract.backoff import Backoff
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


DRIVEN = {"sweep_interval_s": 3600.0, "connect_timeout_s": 30.0}
"""Settings for a worker whose time a :class:`ManualClock` drives: its own sweep and its
connect timer never come due during a test, so only :meth:`ManualClock.sweep` moves it."""


TICK_S = 0.001


@dataclass
class ManualClock:
    """One fake time for a worker's monotonic clock and its wall clock.

    ``running_worker(clock=clock)`` makes the worker read it; a test moves it with
    :meth:`advance` and lets the worker act on it with :meth:`sweep`.
    """

    now: float = 1_800_000_000.0
    worker: Worker | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sweep(self) -> None:
        """One sweep of the worker at the current time (heartbeats, deadlines, idle channels).

        Then time moves on by :data:`TICK_S`, before any client can answer: an answer to a
        heartbeat of this sweep comes after it, as it would on a real clock.
        """
        assert self.worker is not None, "use the clock in running_worker(clock=...)"
        self.worker.sweep(self.now)
        self.now += TICK_S


@contextlib.asynccontextmanager
async def running_worker(
    bus: Bus | None = None,
    *,
    clock: ManualClock | None = None,
    bus_backoff: Backoff | None = None,
    wait_for_bus: bool = True,
    **overrides: Any,
) -> AsyncIterator[Worker]:
    """A started worker with the :data:`FAST` settings and *overrides*, stopped afterwards.

    With *clock*, the worker's time is that clock's (and the :data:`DRIVEN` settings apply
    unless overridden). Unless *wait_for_bus* is False, the bus is live on entry.
    """
    settings = Settings(**{**FAST, **(DRIVEN if clock is not None else {}), **overrides})
    metrics = build_metrics()
    worker = Worker(
        settings,
        bus=bus or build_bus(settings, metrics),
        metrics=metrics,
        bus_backoff=bus_backoff,
        clock=clock or time.monotonic,
        wall_clock=clock or time.time,
    )
    if clock is not None:
        clock.worker = worker
    await worker.start()
    try:
        if wait_for_bus:
            await worker.bus_started()
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
