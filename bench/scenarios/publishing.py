"""What the scenarios publish: publication data that carries its publish time, and a
publisher that keeps the Q&A mix's rate with a bounded number of publications in flight."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TypedDict

from bench.targets import AnyPublisher
from bench.workload import Population, Rates

PAD = "x" * 48
"""Publication data is {"ts": ms, "n": i, "pad": PAD}: about 120 bytes per frame."""

_TICK_S = 0.002


class Data(TypedDict):
    ts: float
    """Publish time, ms since the epoch: probe connections compute their latency from it."""
    n: int
    pad: str


def data(n: int) -> Data:
    """The data of publication *n*, stamped now."""
    return {"ts": time.time() * 1000.0, "n": n, "pad": PAD}


class RatePublisher:
    """Publishes the Q&A mix at a rate through one target publisher (bounded in-flight).

    ``counts`` holds the publications that succeeded, per channel (what :meth:`verify
    <bench.loadgen.generator.LoadGenerator.verify>` expects); ``failed`` those that did not
    (the clients do not expect them); ``late_ticks`` how often the in-flight bound held the
    rate back."""

    def __init__(
        self, publisher: AnyPublisher, population: Population, max_in_flight: int = 256
    ) -> None:
        self.publisher = publisher
        self.population = population
        self.counts: Counter[str] = Counter()
        self.failed = 0
        self.errors: Counter[str] = Counter()
        """The failed publications by exception and message (in the results, for the reader)."""
        self.late_ticks = 0
        self._gate = asyncio.Semaphore(max_in_flight)
        self._n = 0

    @property
    def published(self) -> int:
        return sum(self.counts.values())

    async def _one(self, channel: str) -> None:
        try:
            await self.publisher.publish(channel, data(self._n))
            self.counts[channel] += 1
        except Exception as exc:  # noqa: BLE001 - counted: the clients do not expect it
            self.failed += 1
            self.errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
        finally:
            self._gate.release()

    async def run(self, rates: Rates, duration_s: float, stop: asyncio.Event | None = None) -> None:
        """Publish at ``rates.total_per_s`` for *duration_s* or until *stop* is set; then
        wait (at most 10 s) for the publications in flight."""
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if now - started >= duration_s or (stop is not None and stop.is_set()):
                break
            due = int((now - started) * rates.total_per_s)
            while sent < due:
                if self._gate.locked():
                    self.late_ticks += 1
                await self._gate.acquire()
                self._n += 1
                task = asyncio.ensure_future(self._one(self.population.draw_event(rates)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(_TICK_S)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
