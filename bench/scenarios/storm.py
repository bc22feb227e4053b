"""Scenario e, the reconnect storm: a whole Herald fleet killed and started again.

N clients (the Q&A population) are on a fleet while publications keep flowing; the fleet is
killed (SIGKILL of the whole process tree) and started again on the same port; every client
reconnects at once with its recovery positions. Measured: the time until all are ready
again (and the curve of it), and the publications lost (none, when recovery works).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from itertools import pairwise
from typing import TypedDict

from redis.asyncio import Redis

from bench import measure
from bench.loadgen.results import Verify
from bench.scenarios.harness import (
    HOST,
    Bench,
    Server,
    finish_profiles,
    kill_tree,
    running,
    start_profiles,
    stop_server,
    wait_publications,
)
from bench.scenarios.publishing import RatePublisher
from bench.scenarios.summary import ConnectionSummary, connection_summary
from bench.targets import Target
from bench.workload import NOMINAL, Population
from herald_contract.keys import KeyLayout
from herald_contract.redis_pools import NO_CLIENT_SETINFO
from tests.support.redis_server import free_port

_SEED = 5
_LOSS_SEEN_S = 30.0
_CURVE_EVERY_S = 0.5


class StormSetup(TypedDict):
    target: str
    workers: int
    tabs: int
    subscriptions: int
    publish_rate_per_s: float
    reconnect_concurrency: int
    opened: int
    open_retries: int
    open_trouble: ConnectionSummary
    """What went wrong while the clients first opened (all zero and empty: nothing)."""


class Outage(TypedDict):
    clients_saw_loss_s: float
    fleet_restart_s: float


class Recovery(TypedDict):
    ready_curve: list[list[float]]
    """(seconds since the restarted fleet was ready, clients ready)."""
    time_to_ready_fraction_s: dict[str, float | None]
    time_to_recover_s: float
    outage_s: float
    reconnected: int
    reconnect_retries: int
    ready_after: int
    server_cpu_s_during_recovery: float


class Steady(TypedDict):
    steady_cpu_us_per_client_s: float | None
    """The fleet's CPU per connected client per second once all were back (the
    ``storm_after_s`` after the recovery, publications still flowing): what a client costs
    while it is connected (fan-out, heartbeats, the sweep, collections), handshakes aside."""
    recovery_cpu_split: RecoverySplit | None


class RecoverySplit(TypedDict):
    """The recovery's worker CPU, split by the steady cost: an estimate, not a profile."""

    connected_client_s: float
    """The ready curve's area: seconds clients spent connected during the recovery."""
    connected_cpu_s: float
    """``connected_client_s`` at the steady cost a client-second."""
    reconnecting_cpu_s: float
    """The rest: what the reconnects themselves cost (handshakes, recovery, replays)."""
    reconnecting_ms_per_client: float


class Accounting(TypedDict):
    publications: int
    publications_while_fleet_down: int
    publish_failures: int
    recovered_subscriptions: int
    recovery_failed: int
    gaps: int
    duplicates: int
    verify: Verify
    lost: int
    recoveries_metric: dict[str, float | None]
    short_channels: list[ShortChannel]
    """When a client is short: the sampled short clients' channels held against Redis."""
    diagnosis: dict[str, object]
    """When a client is short: the fleet's repair and bus counters, and Redis's view of the
    workers' pub/sub connections (who still subscribes the short channels)."""


class ShortChannel(TypedDict):
    channel: str
    published: int
    """Publications on it since the reset (the bench's own count)."""
    client: list[str | int] | None
    """The client's [epoch, offset]: its last publication received in order."""
    top: list[str | int] | None
    """The channel's [epoch, top offset] in Redis now."""
    ready: bool


class StormRun(StormSetup, Outage, Recovery, Steady, Accounting, ConnectionSummary):
    """One storm, in the order the results JSON lists its fields."""


class _Kill(TypedDict):
    second: Server
    t_kill: float
    outage: Outage
    published_while_down: int


async def run(bench: Bench) -> list[StormRun]:
    """One run on Herald (none when Herald is not among the run's targets)."""
    target = bench.targets.get("herald")
    if target is None:
        return []
    scale = bench.scale
    pop = Population(scale.storm_tabs, seed=_SEED)
    rates = NOMINAL.scaled(pop.tabs, scale.storm_rate_multiplier)
    port = free_port(HOST)
    async with running(bench, target, scale.storm_workers, port) as first:
        r = await bench.gen.open(
            HOST, port, pop.assignments, timeout_s=scale.open_timeout_s,
            concurrency=scale.open_concurrency, retry=True,
        )  # fmt: skip
        # The storm measures the recovery after the kill; the first open is its set-up, so a
        # client retries it as client-js would (a loaded CI machine once left one client of
        # 300 unopened at smoke scale, and it then lost what it had no position for).
        opening = await bench.gen.stats()
        setup: StormSetup = {
            "target": "herald",
            "workers": scale.storm_workers,
            "tabs": pop.tabs,
            "subscriptions": sum(pop.subscribers.values()),
            "publish_rate_per_s": round(rates.total_per_s, 2),
            "reconnect_concurrency": scale.storm_concurrency,
            "opened": r["opened"],
            "open_retries": r["retries"],
            "open_trouble": connection_summary(opening),
        }
        await bench.gen.reset()
        async with target.publisher(bench.redis.url) as publisher:
            rp = RatePublisher(publisher, pop)
            stop = asyncio.Event()
            publishing = asyncio.ensure_future(rp.run(rates, 3600.0, stop))
            try:
                await asyncio.sleep(scale.storm_before_s)
                kill = await _kill_and_restart(bench, target, first, rp)
                recovery = await _recover(bench, kill["second"], pop, kill["t_kill"])
                steady = await _steady(kill["second"], recovery, scale.storm_after_s)
            finally:
                stop.set()
                await publishing
        accounting, summary = await _account(bench, pop, rp, kill)
        with contextlib.suppress(Exception):
            await bench.gen.close_all(timeout_s=20)
        await stop_server(kill["second"])
    return [{**setup, **kill["outage"], **recovery, **steady, **accounting, **summary}]


async def _kill_and_restart(
    bench: Bench, target: Target, first: Server, rp: RatePublisher
) -> _Kill:
    """SIGKILL the fleet, wait until the clients saw it, start it again on the same port."""
    scale = bench.scale
    t_kill = time.monotonic()
    at_kill = rp.published
    kill_tree(first.proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        first.proc.wait(10)
    deadline = time.monotonic() + _LOSS_SEEN_S
    while time.monotonic() < deadline:
        if (await bench.gen.progress())["open"] == 0:
            break
        await asyncio.sleep(0.05)
    saw_loss_s = round(time.monotonic() - t_kill, 2)
    bench.log("storm: fleet killed, its clients disconnected")
    if measure.server_code_sha() != bench.code_sha:
        bench.notes.append("the servers' code changed on disk before the storm restart")
    with (bench.log_dir / f"herald-storm-{first.port}.log").open("ab") as log:
        proc = await asyncio.to_thread(
            target.start, first.port, bench.redis.url, scale.storm_workers, stderr=log
        )
    return {
        "second": Server(target, proc, first.port, scale.storm_workers),
        "t_kill": t_kill,
        "outage": {
            "clients_saw_loss_s": saw_loss_s,
            "fleet_restart_s": round(time.monotonic() - t_kill, 2),
        },
        "published_while_down": rp.published - at_kill,
    }


async def _recover(bench: Bench, second: Server, pop: Population, t_kill: float) -> Recovery:
    """Every client reconnects with its positions; the curve of ready clients over time."""
    scale = bench.scale
    t_ready = time.monotonic()
    s0 = second.sample()
    profiles = start_profiles(bench, second, "storm")
    reconnecting = asyncio.ensure_future(
        bench.gen.reconnect_all(
            HOST, second.port, concurrency=scale.storm_concurrency, timeout_s=scale.storm_timeout_s
        )
    )
    curve: list[list[float]] = []
    while not reconnecting.done():
        ready = (await bench.gen.progress())["ready"]
        curve.append([round(time.monotonic() - t_ready, 2), ready])
        await asyncio.wait([reconnecting], timeout=_CURVE_EVERY_S)
    rc = reconnecting.result()
    t_rec = time.monotonic()
    s1 = second.sample()
    progress = await bench.gen.progress()
    bench.log(f"storm: {rc['reconnected']}/{pop.tabs} recovered in {t_rec - t_ready:.2f} s")
    await finish_profiles(profiles)
    return {
        "ready_curve": curve,
        "time_to_ready_fraction_s": {
            str(f): next((t for t, r in curve if r >= f * pop.tabs), None) for f in (0.5, 0.9, 0.99)
        },
        "time_to_recover_s": round(t_rec - t_ready, 2),
        "outage_s": round(t_rec - t_kill, 2),
        "reconnected": rc["reconnected"],
        "reconnect_retries": rc["retries"],
        "ready_after": progress["ready"],
        "server_cpu_s_during_recovery": round(s1.cpu_s - s0.cpu_s, 2),
    }


async def _steady(second: Server, recovery: Recovery, seconds: float) -> Steady:
    """The fleet's CPU over *seconds* with every client back, and the recovery split by it."""
    s0, t0 = second.sample(), time.monotonic()
    await asyncio.sleep(seconds)
    s1, t1 = second.sample(), time.monotonic()
    clients = recovery["ready_after"]
    if clients == 0 or t1 <= t0:
        return {"steady_cpu_us_per_client_s": None, "recovery_cpu_split": None}
    per_client_s = (s1.cpu_s - s0.cpu_s) / (t1 - t0) / clients
    return {
        "steady_cpu_us_per_client_s": round(per_client_s * 1e6, 2),
        "recovery_cpu_split": split_recovery_cpu(
            recovery["ready_curve"],
            recovery["server_cpu_s_during_recovery"],
            recovery["reconnected"],
            per_client_s,
        ),
    }


def split_recovery_cpu(
    curve: list[list[float]], cpu_s: float, reconnected: int, per_client_s: float
) -> RecoverySplit:
    """*cpu_s* split into what the clients already back cost at *per_client_s* (CPU-s per
    client-second) over the area of the ready *curve*, and the rest, the reconnects'."""
    area = sum((t1 - t0) * (r0 + r1) / 2 for (t0, r0), (t1, r1) in pairwise(curve))
    connected = min(cpu_s, area * per_client_s)
    rest = cpu_s - connected
    return {
        "connected_client_s": round(area, 1),
        "connected_cpu_s": round(connected, 2),
        "reconnecting_cpu_s": round(rest, 2),
        "reconnecting_ms_per_client": round(1000 * rest / max(reconnected, 1), 3),
    }


async def _account(
    bench: Bench, pop: Population, rp: RatePublisher, kill: _Kill
) -> tuple[Accounting, ConnectionSummary]:
    """What every client got against what was published: nothing may be lost."""
    expected = sum(count * pop.subscribers.get(ch, 0) for ch, count in rp.counts.items())
    stats = await wait_publications(bench, expected, 30.0)
    verify = await bench.gen.verify(dict(rp.counts))
    accounting: Accounting = {
        "publications": rp.published,
        "publications_while_fleet_down": kill["published_while_down"],
        "publish_failures": rp.failed,
        "recovered_subscriptions": stats["recovered"],
        "recovery_failed": stats["recovery_failed"],
        "gaps": stats["gaps"],
        "duplicates": stats["duplicates"],
        "verify": verify,
        "lost": verify["missing"] + stats["gaps"],
        "recoveries_metric": {
            k: kill["second"].metric("herald_recoveries_total", result=k)
            for k in ("none", "recovered", "failed")
        },
        "short_channels": [],
        "diagnosis": {},
    }
    if verify["missing"]:
        accounting["short_channels"], accounting["diagnosis"] = await _where_lost(
            bench, kill["second"], rp, verify
        )
    return accounting, connection_summary(stats)


_DIAGNOSIS_METRICS = (
    "herald_gap_repairs_total",
    "herald_position_checks_total",
    "herald_position_channels_behind_total",
    "herald_position_repairs_total",
    "herald_bus_reconnects_total",
    "herald_bus_live",
    "herald_channels_subscribed",
    "herald_worker_connections",
)


async def _where_lost(
    bench: Bench, fleet: Server, rp: RatePublisher, verify: Verify
) -> tuple[list[ShortChannel], dict[str, object]]:
    """Where a loss may come from.

    Each sampled short client's channels that were published on, with the client's position
    beside the channel's top in Redis: behind it with no gap counted is a tail never
    delivered; at it, the count was short some other way. Then each worker's counters of
    repairs and bus trouble (the fleet's /metrics, series by series) and the pub/sub
    connections Redis holds, with the subscribers of the short channels.
    """
    keys = KeyLayout()
    wanted = [
        (sample, channel, rp.counts[channel])
        for sample in verify["short_samples"]
        for channel in sample["channels"]
        if rp.counts.get(channel, 0)
    ]
    channels = sorted({channel for _, channel, _ in wanted})
    async with Redis.from_url(bench.redis.url, decode_responses=True, **NO_CLIENT_SETINFO) as r:
        pipe = r.pipeline(transaction=False)
        for _, channel, _ in wanted:
            pipe.hmget(keys.meta(channel), ["epoch", "top"])
        tops = await pipe.execute()
        clients = await r.client_list()
        numsub = await r.pubsub_numsub(*(keys.live(ch) for ch in channels)) if channels else []
    short: list[ShortChannel] = [
        {
            "channel": channel,
            "published": published,
            "client": sample["positions"].get(channel),
            "top": None if top is None else [str(epoch), int(top)],
            "ready": sample["ready"],
        }
        for (sample, channel, published), (epoch, top) in zip(wanted, tops, strict=True)
    ]
    series: dict[str, float] = {}
    for line in (fleet.metrics_text() or "").splitlines():
        if line.startswith(_DIAGNOSIS_METRICS):
            head, _, value = line.rpartition(" ")
            series[head] = float(value)
    subscribers = [
        {k: c.get(k) for k in ("id", "age", "idle", "sub", "omem", "tot-mem", "flags", "cmd")}
        for c in clients
        if int(c.get("sub", 0)) > 0
    ]
    diagnosis: dict[str, object] = {
        "metrics": series,
        "pubsub_clients": subscribers,
        "numsub": {str(name): int(n) for name, n in numsub},
    }
    return short, diagnosis
