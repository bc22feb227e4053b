"""Scenario b, broadcast: one channel, N subscribers, deliveries per server CPU-second.

Publications go out as fast as the server delivers them, with a window of publications
allowed ahead of the average client; every client's count is checked. At the first window
of each size, a burst of publications made ready together measures how many write calls
reach each connection (frames coalesced per write).
"""

from __future__ import annotations

import asyncio
import time
from typing import NotRequired, TypedDict, cast

from bench.loadgen.results import Verify
from bench.scenarios.harness import (
    HOST,
    Bench,
    Server,
    cpu_of_loadgen,
    per_plan,
    running,
    wait_messages,
    wait_publications,
)
from bench.scenarios.publishing import data
from bench.scenarios.summary import ConnectionSummary, Latency, connection_summary, percentiles
from bench.targets import AnyPublisher, Target

CHANNEL = "tag:bench"
_PROBE_EVERY = 100


class Burst(TypedDict):
    publications: int
    frames: int
    server_writes: int
    frames_per_write: float
    writes_per_connection: float


class _BroadcastPoint(ConnectionSummary):
    connections: int
    publications: int
    published: int
    window: int
    deliveries: int
    seconds: float
    deliveries_per_s: int
    server_cpu_s: float
    deliveries_per_server_cpu_s: int
    server_writes_per_delivery: float
    loadgen_cpu_s: float
    loadgen_cpu_us_per_delivery: float
    redis_cpu_s: float
    latency: Latency
    gaps: int
    duplicates: int
    verify: Verify


class BroadcastPoint(_BroadcastPoint, total=False):
    burst: Burst
    """At the first window of each connection count only."""


class BroadcastRun(TypedDict):
    target: str
    workers: int
    points: list[BroadcastPoint]
    round: NotRequired[int]
    """Which round of the run (bench.scenarios.harness.per_plan sets it)."""


async def run(bench: Bench) -> list[BroadcastRun]:
    """Every target of the run with every plan of the scale's ``broadcast``."""
    return await per_plan(bench, bench.scale.broadcast, _run)


async def _run(bench: Bench, target: Target, workers: int, sizes: list[int]) -> BroadcastRun:
    scale = bench.scale
    points: list[BroadcastPoint] = []
    async with running(bench, target, workers) as srv, target.publisher(bench.redis.url) as pub:
        opened = 0
        for size in sizes:
            r = await bench.gen.open(
                HOST, srv.port, [[CHANNEL]] * (size - opened), probe_every=_PROBE_EVERY,
                timeout_s=scale.open_timeout_s, concurrency=scale.open_concurrency,
            )  # fmt: skip
            opened += r["opened"]
            if opened < size:
                bench.notes.append(f"broadcast {target.name}: opened {opened} of {size}")
            for i, window in enumerate(scale.broadcast_windows):
                # The measured point is a BroadcastPoint without its optional burst yet.
                point = cast(BroadcastPoint, await _point(bench, srv, pub, opened, window))
                if i == 0:
                    point["burst"] = await _burst(bench, srv, pub, opened)
                points.append(point)
                bench.log(
                    f"broadcast {target.name} x{workers}: {opened} conns, window {window}: "
                    f"{point['deliveries_per_s']:.0f}/s, "
                    f"{point['deliveries_per_server_cpu_s']:.0f}/server-cpu-s, "
                    f"{point['server_writes_per_delivery']} writes/delivery, "
                    f"missing {point['verify']['missing']}"
                )
            if opened < size:
                break
    return {"target": target.name, "workers": workers, "points": points}


async def _publish_windowed(
    bench: Bench, publisher: AnyPublisher, n: int, pubs: int, window: int, deadline: float
) -> int:
    """Publish *pubs* publications to *n* clients, at most *window* ahead of the average
    client, until *deadline*; how many were published."""
    m0 = (await bench.gen.progress())["messages"]
    published = 0
    while published < pubs and time.monotonic() < deadline:
        delivered = (await bench.gen.progress())["messages"] - m0
        allowed = min(pubs - published, int(delivered / n) + window - published)
        for _ in range(max(0, allowed)):
            await publisher.publish(CHANNEL, data(published))
            published += 1
        if allowed <= 0:
            await asyncio.sleep(0.003)
    await wait_messages(bench, m0, n * pubs, max(1.0, deadline - time.monotonic()))
    return published


async def _point(
    bench: Bench, srv: Server, publisher: AnyPublisher, n: int, window: int
) -> _BroadcastPoint:
    """*window* publications may be ahead of the average client: with more than one, a
    server gets several publications per event-loop turn and may coalesce their frames;
    with one (lockstep), every publication is delivered alone."""
    scale = bench.scale
    deliveries = scale.broadcast_deliveries_for.get(srv.target.name, scale.broadcast_deliveries)
    pubs = max(scale.broadcast_min_pubs, min(scale.broadcast_max_pubs, deliveries // max(n, 1)))
    await asyncio.sleep(scale.settle_s)
    await bench.gen.reset()
    s0, w0, lg0, r0 = srv.sample(), srv.writes(), await cpu_of_loadgen(bench), bench.redis_cpu_s()
    t0 = time.monotonic()
    published = await _publish_windowed(
        bench, publisher, n, pubs, window, t0 + scale.broadcast_timeout_s
    )
    t1 = time.monotonic()
    s1, w1, lg1, r1 = srv.sample(), srv.writes(), await cpu_of_loadgen(bench), bench.redis_cpu_s()
    stats = await wait_publications(bench, n * pubs, 10.0)
    verify = await bench.gen.verify({CHANNEL: pubs})
    latencies = await bench.gen.latencies()
    delivered = stats["publications"] - stats["duplicates"]
    cpu = s1.cpu_s - s0.cpu_s
    return {
        "connections": n,
        "publications": pubs,
        "published": published,
        "window": window,
        "deliveries": delivered,
        "seconds": round(t1 - t0, 3),
        "deliveries_per_s": round(delivered / max(t1 - t0, 1e-9)),
        "server_cpu_s": round(cpu, 3),
        "deliveries_per_server_cpu_s": round(delivered / max(cpu, 1e-9)),
        "server_writes_per_delivery": round((w1 - w0) / max(delivered, 1), 3),
        "loadgen_cpu_s": round(lg1 - lg0, 3),
        "loadgen_cpu_us_per_delivery": round(1e6 * (lg1 - lg0) / max(delivered, 1), 2),
        "redis_cpu_s": round(r1 - r0, 3),
        "latency": percentiles(latencies),
        "gaps": stats["gaps"],
        "duplicates": stats["duplicates"],
        "verify": verify,
        **connection_summary(stats),
    }


async def _burst(bench: Bench, srv: Server, publisher: AnyPublisher, n: int) -> Burst:
    """K publications ready together: how many write calls reach each connection.

    ``CLIENT PAUSE 300 WRITE`` holds the K publish commands (scripts and PUBLISH alike) in
    Redis, which then runs them in one go and hands the server's subscription connection the
    K messages at once, for every target the same way."""
    k = bench.scale.burst_size
    await asyncio.sleep(0.3)
    before = await bench.gen.stats()
    m0, w0 = (await bench.gen.progress())["messages"], srv.writes()
    bench.redis_admin().client_pause(300, all=False)
    await asyncio.gather(*(publisher.publish(CHANNEL, data(i)) for i in range(k)))
    await wait_messages(bench, m0, n * k, 30.0)
    await asyncio.sleep(0.2)
    w1 = srv.writes()
    after = await bench.gen.stats()
    frames = (after["publications"] - after["duplicates"]) - (
        before["publications"] - before["duplicates"]
    )
    writes = w1 - w0  # heartbeats that went out meanwhile are in here too (a few)
    return {
        "publications": k,
        "frames": frames,
        "server_writes": writes,
        "frames_per_write": round(frames / max(writes, 1), 2),
        "writes_per_connection": round(writes / max(n, 1), 2),
    }
