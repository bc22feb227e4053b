"""The coordinator: starts the load processes and drives them, one bounded command at a time.

    gen = LoadGenerator(processes=6)          # spawns 6 processes (multiprocessing "spawn")
    await gen.start()
    await gen.set_adapter(HeraldAdapter(), host, port)
    await gen.open(host, port, assignments, probe_every=20, timeout_s=120)
    stats = await gen.stats()                 # summed over the processes
    await gen.close_all()
    await gen.stop()

Connections are spread evenly over the processes; each process binds its clients to its own
loopback source (127.0.0.2, 127.0.0.3, ...) and its churn cycles to sixteen more
(127.1.<i>.1-16). Every method waits for every process's answer, at most the command's
timeout plus a margin, and raises :class:`LoadProcessError` when one fails or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import multiprocessing
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from bench.loadgen.adapters import Adapter
from bench.loadgen.churn import ChurnPlan
from bench.loadgen.pipe import Reply, process_main, start_reader
from bench.loadgen.process import MAX_PER_PROCESS
from bench.loadgen.results import (
    ChurnReply,
    CloseReply,
    Opened,
    OpenReply,
    ProcessStats,
    Progress,
    Reconnected,
    ReconnectReply,
    Stats,
    Verify,
)

T = TypeVar("T")
_ANSWER_MARGIN_S = 30.0


class LoadProcessError(RuntimeError):
    """A load process failed a command, did not answer in time, or died."""

    def __init__(self, index: int, command: str, why: str) -> None:
        super().__init__(f"load process {index}, command {command}: {why}")


def split_even(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """*items* in *parts* contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    out: list[Sequence[T]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _summed(values: Sequence[dict[str, int]]) -> dict[str, int]:
    merged: Counter[str] = Counter()
    for value in values:
        merged.update(value)
    return dict(merged)


def sum_stats(per: Sequence[ProcessStats]) -> Stats:
    """The processes' stats added up (counters summed, per-key counts merged)."""
    return {
        "per_process_cpu_s": [p["cpu_s"] for p in per],
        "clients": sum(p["clients"] for p in per),
        "open": sum(p["open"] for p in per),
        "ready": sum(p["ready"] for p in per),
        "lost_unexpectedly": sum(p["lost_unexpectedly"] for p in per),
        "adapter_errors": sum(p["adapter_errors"] for p in per),
        "adapter_error_codes": _summed([p["adapter_error_codes"] for p in per]),
        "connect_failures": _summed([p["connect_failures"] for p in per]),
        "handshake_failures": _summed([p["handshake_failures"] for p in per]),
        "closes": _summed([p["closes"] for p in per]),
        "cpu_s": sum(p["cpu_s"] for p in per),
        "publications": sum(p["publications"] for p in per),
        "duplicates": sum(p["duplicates"] for p in per),
        "gaps": sum(p["gaps"] for p in per),
        "subscribed": sum(p["subscribed"] for p in per),
        "recovered": sum(p["recovered"] for p in per),
        "recovery_failed": sum(p["recovery_failed"] for p in per),
        "latency_pending": sum(p["latency_pending"] for p in per),
    }


class LoadGenerator:
    """Starts and drives the load processes; every method is a bounded command."""

    def __init__(self, processes: int, *, first_source: int = 2) -> None:
        if processes < 1:
            raise ValueError("need at least one load process")
        self.processes = processes
        self.sources = [f"127.0.0.{first_source + i}" for i in range(processes)]
        self._procs: list[BaseProcess] = []
        self._pipes: list[Connection] = []
        self._waiting: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    @property
    def capacity(self) -> int:
        return self.processes * MAX_PER_PROCESS

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        for i, source in enumerate(self.sources):
            parent, child = ctx.Pipe()
            churn = [f"127.1.{i}.{j}" for j in range(1, 17)]
            proc = ctx.Process(target=process_main, args=(i, [source], churn, child), daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._pipes.append(parent)
            start_reader(parent, loop, functools.partial(self._on_reply, i))

    def _on_reply(self, index: int, message: Reply | None) -> None:
        if message is None:
            if index >= len(self._procs):
                return  # stopped
            proc = self._procs[index]
            proc.join(1.0)
            why = f"the process died (exit code {proc.exitcode})"
            for (i, _), fut in list(self._waiting.items()):
                if i == index and not fut.done():
                    fut.set_exception(LoadProcessError(index, "?", why))
            return
        request_id, ok, result = message
        waiter = self._waiting.pop((index, request_id), None)
        if waiter is None or waiter.done():
            return
        if ok:
            waiter.set_result(result)
        else:
            waiter.set_exception(LoadProcessError(index, "?", result))

    async def _call(self, index: int, name: str, wait_s: float, args: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[(index, request_id)] = fut
        self._pipes[index].send((request_id, name, args))
        try:
            async with asyncio.timeout(wait_s):
                return await fut
        except TimeoutError:
            raise LoadProcessError(index, name, f"no answer within {wait_s} s") from None
        finally:
            self._waiting.pop((index, request_id), fut)

    async def _all(
        self, name: str, wait_s: float, per_process: Sequence[dict[str, Any]]
    ) -> list[Any]:
        """Send command *name* to every process (process i gets ``per_process[i]``)."""
        calls = [self._call(i, name, wait_s, per_process[i]) for i in range(self.processes)]
        return list(await asyncio.gather(*calls))

    async def _same(self, name: str, wait_s: float, **args: Any) -> list[Any]:
        """Send command *name* with the same arguments to every process."""
        return await self._all(name, wait_s, [args] * self.processes)

    async def set_adapter(self, adapter: Adapter, host: str, port: int) -> None:
        await self._same("adapter", 30.0, adapter=adapter, host=host, port=port)

    async def open(
        self,
        host: str,
        port: int,
        assignments: Sequence[Sequence[str]],
        *,
        probe_every: int = 0,
        concurrency: int = 500,
        timeout_s: float = 60.0,
        retry: bool = False,
    ) -> Opened:
        """Open one connection per assignment (its channels), spread over the processes;
        return once all are ready or *timeout_s* passed. With *retry*, an attempt that fails
        (or is not ready in client-js's connect timeout) is made again, as a browser's
        client would, until *timeout_s*; ``retries`` counts those attempts."""
        if len(assignments) > self.capacity:
            raise ValueError(f"{len(assignments)} connections > capacity {self.capacity}")
        chunks = split_even(list(assignments), self.processes)
        started = time.monotonic()
        args = {
            "host": host,
            "port": port,
            "probe_every": probe_every,
            "concurrency": max(1, concurrency // self.processes),
            "timeout_s": timeout_s,
            "retry": retry,
        }
        per: list[OpenReply] = await self._all(
            "open", timeout_s + _ANSWER_MARGIN_S, [{**args, "assignments": c} for c in chunks]
        )
        return {
            "requested": len(assignments),
            "opened": sum(r["opened"] for r in per),
            "seconds": time.monotonic() - started,
            "retries": sum(r["retries"] for r in per),
        }

    async def stats(self) -> Stats:
        per: list[ProcessStats] = await self._same("stats", 30.0)
        return sum_stats(per)

    async def progress(self) -> Progress:
        per: list[Progress] = await self._same("progress", 30.0)
        return {
            "messages": sum(p["messages"] for p in per),
            "open": sum(p["open"] for p in per),
            "ready": sum(p["ready"] for p in per),
        }

    async def latencies(self) -> list[float]:
        per: list[list[float]] = await self._same("latencies", 30.0)
        return [x for part in per for x in part]

    async def reset(self) -> None:
        await self._same("reset", 30.0)

    async def verify(self, expected: dict[str, int]) -> Verify:
        per: list[Verify] = await self._same("verify", 60.0, expected=expected)
        return {
            "clients_exact": sum(p["clients_exact"] for p in per),
            "clients_short": sum(p["clients_short"] for p in per),
            "missing": sum(p["missing"] for p in per),
            "extra": sum(p["extra"] for p in per),
            "clients_never_ready": sum(p["clients_never_ready"] for p in per),
            "missing_never_ready": sum(p["missing_never_ready"] for p in per),
            "short_samples": [x for p in per for x in p["short_samples"]],
        }

    async def close_all(self, timeout_s: float = 20.0) -> CloseReply:
        per: list[CloseReply] = await self._same(
            "close_all", timeout_s + _ANSWER_MARGIN_S, timeout_s=timeout_s
        )
        return {"aborted": sum(p["aborted"] for p in per)}

    async def reconnect_all(
        self, host: str, port: int, *, concurrency: int = 1000, timeout_s: float = 120.0
    ) -> Reconnected:
        """Abort every connection and reconnect all with their recovery positions: the
        reconnect storm."""
        started = time.monotonic()
        per: list[ReconnectReply] = await self._same(
            "reconnect_all",
            timeout_s + _ANSWER_MARGIN_S,
            host=host,
            port=port,
            concurrency=max(1, concurrency // self.processes),
            timeout_s=timeout_s,
        )
        return {
            "reconnected": sum(p["reconnected"] for p in per),
            "retries": sum(p["retries"] for p in per),
            "seconds": time.monotonic() - started,
            "per_process_seconds": [p["seconds"] for p in per],
        }

    async def churn(self, host: str, port: int, plan: ChurnPlan) -> ChurnReply:
        """The cycles of *plan*, shared out over the processes; ``seconds`` is the slowest
        process's."""
        per: list[ChurnReply] = await self._same(
            "churn",
            plan.duration_s + plan.cycle_timeout_s + _ANSWER_MARGIN_S,
            host=host,
            port=port,
            plan=plan.share(self.processes),
        )
        return {
            "launched": sum(p["launched"] for p in per),
            "completed": sum(p["completed"] for p in per),
            "failed": sum(p["failed"] for p in per),
            "errors": _summed([p["errors"] for p in per]),
            "throttled_ticks": sum(p["throttled_ticks"] for p in per),
            "seconds": max(p["seconds"] for p in per),
            "cycle_ms": [x for p in per for x in p["cycle_ms"]],
        }

    async def stop(self) -> None:
        """Stop every process (politely, then by force) and close the pipes."""
        with contextlib.suppress(Exception):
            await self._same("stop", 10.0)
        for pipe in self._pipes:
            pipe.close()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self._procs.clear()
        self._pipes.clear()
