"""Churn: connections opened, subscribed and closed at a rate, each a short-lived client.

A cycle is connect + upgrade + every subscription confirmed + closing handshake, ending when
the server closes the TCP connection; cycles come from their own loopback sources (the churn
sources of the process) so that their ports never compete with the long-lived clients'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.loadgen.client import Client, Slot, connect
from bench.loadgen.results import ChurnReply

if TYPE_CHECKING:
    from bench.loadgen.process import LoadProcess

_TICK_S = 0.005


@dataclass(frozen=True)
class ChurnPlan:
    """Cycles on *channels* at *rate_per_s* for *duration_s*: at most *max_count* of them,
    at most *concurrency* at once, each cut after *cycle_timeout_s*."""

    channels: tuple[str, ...]
    rate_per_s: float
    duration_s: float
    max_count: int
    concurrency: int = 200
    cycle_timeout_s: float = 10.0

    def share(self, processes: int) -> ChurnPlan:
        """One load process's part of this plan when *processes* share it."""
        return dataclasses.replace(
            self,
            rate_per_s=self.rate_per_s / processes,
            max_count=max(1, self.max_count // processes),
            concurrency=max(1, self.concurrency // processes),
        )


class ChurnRun:
    """One churn command of *proc*; :meth:`run` once."""

    def __init__(self, proc: LoadProcess, host: str, port: int, plan: ChurnPlan) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.plan = plan
        self._sources = itertools.cycle(proc.churn_sources)
        self._gate = asyncio.Semaphore(plan.concurrency)
        self._counts = Counter[str]()
        self._cycle_ms: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> ChurnReply:
        """The plan's cycles; counts and cycle times."""
        loop = asyncio.get_running_loop()
        plan = self.plan
        rate_per_s, max_count = plan.rate_per_s, plan.max_count
        started = time.monotonic()
        # The count is the goal and the time the bound: a loaded machine may take a little
        # longer than duration_s to launch max_count cycles, never more than half as long.
        end = started + plan.duration_s * 1.5 + 1.0
        launched = 0
        while launched < max_count:
            now = time.monotonic()
            if now >= end:
                break
            due = min(max_count, int((now - started) * rate_per_s) + 1)
            while launched < due and not self._gate.locked():
                await self._gate.acquire()
                task = loop.create_task(self._cycle(next(self._sources)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                launched += 1
            if self._gate.locked():
                self._counts["throttled_ticks"] += 1
            await asyncio.sleep(_TICK_S)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=plan.cycle_timeout_s + 1.0)
        for task in list(self._tasks):
            task.cancel()
        counts = self._counts
        return {
            "launched": launched,
            "completed": counts["completed"],
            "failed": counts["failed"],
            "errors": {k: v for k, v in counts.items() if k.startswith("error:")},
            "throttled_ticks": counts["throttled_ticks"],
            "seconds": time.monotonic() - started,
            "cycle_ms": self._cycle_ms,
        }

    async def _cycle(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        proc = self.proc
        t0 = time.monotonic()
        slot = Slot(self.plan.channels, False)
        client = Client(proc, slot)
        slot.conn = client
        ready: asyncio.Future[bool] = loop.create_future()
        lost: asyncio.Future[None] = loop.create_future()

        def on_done(ok: bool) -> None:
            if not ready.done():
                ready.set_result(ok)

        client.on_done = on_done
        proc.churn_lost[client] = lost
        try:
            async with asyncio.timeout(self.plan.cycle_timeout_s):
                await connect(loop, client, self.host, self.port, source)
                if not await ready:
                    self._counts["failed"] += 1
                    return
                client.close()
                await lost
            self._counts["completed"] += 1
            self._cycle_ms.append((time.monotonic() - t0) * 1000.0)
        except (OSError, TimeoutError) as exc:
            self._counts["failed"] += 1
            self._counts["error:" + type(exc).__name__] += 1
            client.abort()
        finally:
            proc.churn_lost.pop(client, None)
            if slot.ready:
                slot.ready = False
                proc.ready_count -= 1
            self._gate.release()
