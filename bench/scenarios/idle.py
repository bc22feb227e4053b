"""Scenario a, idle: memory per connection and the CPU spent holding idle connections.

For each target and plan, connections (each subscribed to one of 100 channels) are opened
in steps up to each size of the plan; after each step the server's RSS delta divided by the
connections gives the memory per connection (kernel TCP buffers and slab apart). Then the
connections are held for ``idle_window_s`` (longer than one heartbeat interval) and the
server's CPU over that window is reported.
"""

from __future__ import annotations

import asyncio
import time
from typing import NotRequired, TypedDict

from bench import measure
from bench.scenarios.harness import HOST, Bench, Server, cpu_of_loadgen, per_plan, running
from bench.scenarios.summary import ConnectionSummary, connection_summary
from bench.targets import Target

CHANNELS = 100


class IdlePoint(TypedDict):
    requested: int
    connections: int
    connections_per_worker: int
    open_seconds: float
    opened_per_s: int
    rss_kib: int
    per_pid_rss_kib: list[int]
    rss_per_connection_kib: float
    kernel_tcp_buffers_per_connection_kib: float
    kernel_slab_per_connection_kib: float


class IdleHold(ConnectionSummary):
    connections: int
    seconds: float
    server_cpu_s: float
    server_cpu_percent: float
    server_cpu_us_per_connection_per_s: float
    loadgen_cpu_s: float
    still_open: int


class IdleRun(TypedDict):
    target: str
    workers: int
    points: list[IdlePoint]
    rss_before_kib: int
    hold: IdleHold
    round: NotRequired[int]
    """Which round of the run (bench.scenarios.harness.per_plan sets it)."""


async def run(bench: Bench) -> list[IdleRun]:
    """Every target of the run with every plan of the scale's ``idle``."""
    return await per_plan(bench, bench.scale.idle, _run)


async def _run(bench: Bench, target: Target, workers: int, sizes: list[int]) -> IdleRun:
    scale = bench.scale
    assignments = [[f"question:{1 + i % CHANNELS}"] for i in range(max(sizes))]
    points: list[IdlePoint] = []
    async with running(bench, target, workers) as srv:
        await asyncio.sleep(scale.settle_s)
        base, kernel0 = srv.sample(), measure.kernel_memory_kib()
        opened = 0
        for size in sizes:
            t0 = time.monotonic()
            r = await bench.gen.open(
                HOST, srv.port, assignments[opened:size], timeout_s=scale.open_timeout_s,
                concurrency=scale.open_concurrency,
            )  # fmt: skip
            opened += r["opened"]
            open_s = time.monotonic() - t0
            await asyncio.sleep(scale.settle_s)
            s, kernel = srv.sample(), measure.kernel_memory_kib()
            per_conn = max(opened, 1)
            point: IdlePoint = {
                "requested": size,
                "connections": opened,
                "connections_per_worker": round(opened / workers),
                "open_seconds": round(open_s, 2),
                "opened_per_s": round(r["opened"] / max(open_s, 1e-9)),
                "rss_kib": s.rss_kib,
                "per_pid_rss_kib": list(s.per_pid_rss_kib),
                "rss_per_connection_kib": round((s.rss_kib - base.rss_kib) / per_conn, 2),
                "kernel_tcp_buffers_per_connection_kib": round(
                    (kernel["tcp_mem_kib"] - kernel0["tcp_mem_kib"]) / per_conn, 2
                ),
                "kernel_slab_per_connection_kib": round(
                    (kernel["slab_kib"] - kernel0["slab_kib"]) / per_conn, 2
                ),
            }
            points.append(point)
            bench.log(
                f"idle {target.name} x{workers}: {opened} conns, "
                f"{point['rss_per_connection_kib']} KiB/conn RSS, open {open_s:.1f}s"
            )
            if opened < size:
                bench.notes.append(f"idle {target.name}: opened {opened} of {size}")
                break
        hold = await _hold(bench, srv, opened)
    return {
        "target": target.name,
        "workers": workers,
        "points": points,
        "rss_before_kib": base.rss_kib,
        "hold": hold,
    }


async def _hold(bench: Bench, srv: Server, opened: int) -> IdleHold:
    """The CPU spent holding *opened* connections over a window longer than one heartbeat
    interval."""
    s0, lg0, t0 = srv.sample(), await cpu_of_loadgen(bench), time.monotonic()
    await asyncio.sleep(bench.scale.idle_window_s)
    s1, lg1, t1 = srv.sample(), await cpu_of_loadgen(bench), time.monotonic()
    stats = await bench.gen.stats()
    cpu = s1.cpu_s - s0.cpu_s
    return {
        "connections": opened,
        "seconds": round(t1 - t0, 2),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_percent": round(100 * cpu / (t1 - t0), 2),
        "server_cpu_us_per_connection_per_s": round(1e6 * cpu / (t1 - t0) / max(opened, 1), 3),
        "loadgen_cpu_s": round(lg1 - lg0, 3),
        "still_open": stats["open"],
        **connection_summary(stats),
    }
