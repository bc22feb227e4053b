"""Broadcast fan-out through HAProxy to one fleet host and to two, and to one host directly.

    .venv/bin/python -m bench.hosts [--clients 4000] [--workers 2] [--channels 4] \
        [--rate 20] [--rate-seconds 5] [--max-publications 1000] [--max-seconds 20] \
        [--out bench/results/hosts.json]

In ONE run on this machine, on one redis-server (:class:`tests.support.redis_server.
RedisServer`), three topologies one after the other: (c) ``direct``, one fleet host
(``python -m socketsrv --workers W`` on 127.0.0.2, :class:`launch.hosts.FleetHost`) reached
without a load balancer, the floor; (a) ``haproxy_1``, the same host behind HAProxy; (b)
``haproxy_2``, two hosts of W workers each behind HAProxy (``leastconn``), started by
:class:`launch.hosts.Topology` from ``deploy/haproxy.cfg.template`` with production's
health-check pace (``PRODUCTION_CHECKS``).

For each: N websocket clients (bench/loadgen/, Herald protocol v1) from load processes bound
to 127.0.0.10, 127.0.0.11, ... (at most ~9,000 sockets per process; HAProxy's maxconn is
launch/hosts.py ``MAX_CONNECTIONS``), each subscribed to one of C channels (round robin).
Two phases, both bounded in count and time: ``fixed_rate``, publications at a fixed rate,
round robin over the channels; ``max``, publications as fast as the clients receive them (at
most ``window`` publications ahead of what arrived). Publications carry their publish time
(``data["ts"]``, bench/scenarios/publishing.py); every ``probe_every``-th client measures
publish-to-receive latency. Each phase reports deliveries (every client's count checked
against what was published on its channel), deliveries/s, latency p50/p99, the fleet's CPU
seconds (supervisor and workers, /proc) and HAProxy's, per delivery, Redis's and the load
generator's CPU, the publisher's (this process) and the whole machine's busy CPU (what is
left of it after all of these is other processes'). Then the ratios 2 hosts / 1 host and
HAProxy / direct.

On one machine every host shares the same cores: the two-host figure shows what HAProxy and
a second host cost per delivery and that every delivery arrives, not a doubled throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import measure as proc_measure
from bench.loadgen.generator import LoadGenerator
from bench.loadgen.herald import HeraldAdapter
from bench.scenarios.publishing import data
from bench.scenarios.summary import connection_summary, percentiles
from bench.shards import machine_busy_s
from bench.targets import HERALD_ENV, HeraldPublisher
from launch.hosts import (
    MAX_CONNECTIONS,
    PRODUCTION_CHECKS,
    Balancer,
    FleetHost,
    Haproxy,
    Topology,
)

MAX_SOCKETS_PER_LOAD_PROCESS = 9000
FIRST_SOURCE = 10
"""Load processes bind to 127.0.0.10, .11, ...: apart from the hosts' 127.0.0.2, .3."""
TOPOLOGIES = ("direct", "haproxy_1", "haproxy_2")


@dataclass(frozen=True)
class Plan:
    """What one run does (the command's options)."""

    clients: int = 4000
    workers: int = 2
    """Workers per host."""
    channels: int = 4
    load_processes: int = 0
    """0: enough for at most :data:`MAX_SOCKETS_PER_LOAD_PROCESS` each, at least 2."""
    rate_per_s: float = 20.0
    rate_seconds: float = 5.0
    max_publications: int = 1000
    max_seconds: float = 20.0
    window: int = 8
    probe_every: int = 20
    open_timeout_s: float = 120.0
    topologies: tuple[str, ...] = TOPOLOGIES

    @property
    def processes(self) -> int:
        if self.load_processes > 0:
            return self.load_processes
        return max(2, math.ceil(self.clients / MAX_SOCKETS_PER_LOAD_PROCESS))


@dataclass
class Deployed:
    """A started topology: where the clients connect and whose CPU is measured."""

    name: str
    address: str
    port: int
    hosts: list[FleetHost]
    lb: Haproxy | None = None
    notes: list[str] = field(default_factory=list)

    def fleet_cpu_s(self) -> list[float]:
        """CPU seconds so far of each host's process tree (supervisor and workers)."""
        out = []
        for host in self.hosts:
            assert host.process is not None
            out.append(proc_measure.sample_tree(host.process.pid).cpu_s)
        return out

    def haproxy_cpu_s(self) -> float:
        if self.lb is None or self.lb.process is None:
            return 0.0
        return proc_measure.cpu_s(self.lb.process.pid)

    def check_downs(self) -> dict[str, int]:
        """Per host, how often HAProxy's health checks took it DOWN (``show stat`` chkdown)."""
        if self.lb is None:
            return {}
        return {name: int(row["chkdown"] or 0) for name, row in self.lb.server_stats().items()}

    def clients_per_host(self) -> dict[str, int]:
        """Connections HAProxy holds to each host now (``show stat`` scur)."""
        if self.lb is None:
            return {}
        return {name: int(row["scur"] or 0) for name, row in self.lb.server_stats().items()}


@contextlib.contextmanager
def deployed(name: str, plan: Plan, redis_url: str, run_dir: Path) -> Iterator[Deployed]:
    """Topology *name* started on *redis_url*, every process stopped on exit."""
    from tests.support.haproxy import loopback_hosts, require_haproxy
    from tests.support.redis_server import free_port

    env = {**os.environ, **HERALD_ENV, "HERALD_REDIS_URL": redis_url}
    if name == "direct":
        host = FleetHost(loopback_hosts(1)[0], workers=plan.workers, env=env, log_dir=run_dir)
        try:
            host.start()
            host.wait_ready()
            yield Deployed(name, host.spec.address, host.spec.port, [host])
        finally:
            host.close()
        return
    count = {"haproxy_1": 1, "haproxy_2": 2}[name]
    require_haproxy()
    balancer = Balancer("127.0.0.1", free_port(), free_port(), run_dir)
    # Production's health-check pace, not the tests' FAST_CHECKS: a check times out after
    # its interval, and 100 ms is too short for a host busy with fan-out on 2 shared cores
    # (measured: HAProxy marked the host DOWN and answered 503 to the clients meanwhile).
    topology = Topology(
        loopback_hosts(count), balancer, workers=plan.workers, env=env, checks=PRODUCTION_CHECKS
    )
    try:
        topology.start()
        yield Deployed(name, balancer.address, balancer.port, topology.hosts, topology.lb)
    finally:
        topology.close()


def channel_names(name: str, count: int) -> list[str]:
    """The channels of topology *name* (fresh names per topology: no history in the way)."""
    return [f"tag:hosts-{name.replace('_', '-')}-{i}" for i in range(count)]


async def wait_delivered(
    gen: LoadGenerator, expected: int, deadline: float, *, stall_s: float = 5.0
) -> tuple[int, float]:
    """Poll the clients until they hold *expected* publications (duplicates aside), the
    count stops moving for *stall_s*, or *deadline*; (delivered, when the last arrived)."""
    last, moved_at = -1, time.monotonic()
    while True:
        stats = await gen.stats()
        got = stats["publications"] - stats["duplicates"]
        now = time.monotonic()
        if got != last:
            last, moved_at = got, now
        if got >= expected or now > deadline or now - moved_at > stall_s:
            return got, moved_at
        await asyncio.sleep(0.01 if expected - got < expected // 20 + 1 else 0.05)


async def run_phase(
    gen: LoadGenerator,
    publisher: HeraldPublisher,
    dep: Deployed,
    subscribers: dict[str, int],
    mode: str,
    plan: Plan,
    redis_pid: int,
) -> dict[str, Any]:
    """One phase (``fixed_rate`` or ``max``) on *dep*: publish, wait, count, sample CPU."""
    channels = list(subscribers)
    mean_fanout = sum(subscribers.values()) / len(channels)
    await gen.reset()
    fleet0, lb0 = dep.fleet_cpu_s(), dep.haproxy_cpu_s()
    redis0, gen0 = proc_measure.cpu_s(redis_pid), (await gen.stats())["cpu_s"]
    machine0, own0 = machine_busy_s(), time.process_time()
    m0 = (await gen.progress())["messages"]
    counts: Counter[str] = Counter()
    expected = published = 0
    started = time.monotonic()

    async def publish_one() -> None:
        nonlocal published, expected
        ch = channels[published % len(channels)]
        await publisher.publish(ch, data(published))
        published += 1
        counts[ch] += 1
        expected += subscribers[ch]

    if mode == "fixed_rate":
        stop_at = started + plan.rate_seconds
        total = int(plan.rate_per_s * plan.rate_seconds)
        while published < total and time.monotonic() < stop_at + 1.0:
            due = min(total, int((time.monotonic() - started) * plan.rate_per_s) + 1)
            while published < due:
                await publish_one()
            await asyncio.sleep(max(0.0, started + published / plan.rate_per_s - time.monotonic()))
    else:
        stop_at = started + plan.max_seconds
        while published < plan.max_publications and time.monotonic() < stop_at:
            arrived = (await gen.progress())["messages"] - m0
            ahead = max(0.0, (expected - arrived) / mean_fanout)
            room = min(plan.window - math.ceil(ahead), plan.max_publications - published)
            if room <= 0:
                # Each poll is a round trip to every load process: polling faster only
                # takes CPU from the processes measured (a window drains in 100+ ms).
                await asyncio.sleep(0.02)
                continue
            for _ in range(room):
                await publish_one()
    publish_s = time.monotonic() - started
    delivered, last_at = await wait_delivered(gen, expected, time.monotonic() + 30.0)
    seconds = max(last_at - started, 1e-9)
    fleet1, lb1 = dep.fleet_cpu_s(), dep.haproxy_cpu_s()
    redis1, gen1 = proc_measure.cpu_s(redis_pid), (await gen.stats())["cpu_s"]
    machine1, own1 = machine_busy_s(), time.process_time()
    stats = await gen.stats()
    verify = await gen.verify(dict(counts))
    latencies = await gen.latencies()
    fleet_per_host = [round(b - a, 3) for a, b in zip(fleet0, fleet1, strict=True)]
    fleet_cpu = sum(fleet_per_host)
    lb_cpu = lb1 - lb0
    per = max(delivered, 1)
    return {
        "mode": mode,
        "published": published,
        "publish_seconds": round(publish_s, 3),
        "publications_per_s": round(published / max(publish_s, 1e-9), 1),
        "expected_deliveries": expected,
        "deliveries": delivered,
        "all_delivered": delivered == expected and verify["missing"] == 0,
        "seconds": round(seconds, 3),
        "deliveries_per_s": round(delivered / seconds),
        "latency": percentiles(latencies),
        "fleet_cpu_s": round(fleet_cpu, 3),
        "fleet_cpu_s_per_host": fleet_per_host,
        "fleet_cpu_us_per_delivery": round(1e6 * fleet_cpu / per, 3),
        "haproxy_cpu_s": round(lb_cpu, 3),
        "haproxy_cpu_us_per_delivery": round(1e6 * lb_cpu / per, 3),
        "fleet_and_haproxy_cpu_us_per_delivery": round(1e6 * (fleet_cpu + lb_cpu) / per, 3),
        "redis_cpu_s": round(redis1 - redis0, 3),
        "loadgen_cpu_s": round(gen1 - gen0, 3),
        "loadgen_cpu_us_per_delivery": round(1e6 * (gen1 - gen0) / per, 3),
        "publisher_cpu_s": round(own1 - own0, 3),
        "machine_busy_cpu_s": round(machine1[0] - machine0[0], 2),
        "machine_cpu_s_available": round(machine1[1] - machine0[1], 2),
        "gaps": stats["gaps"],
        "duplicates": stats["duplicates"],
        "verify": verify,
        **connection_summary(stats),
    }


async def run_topology(
    gen: LoadGenerator, name: str, plan: Plan, redis_url: str, redis_pid: int, run_dir: Path
) -> dict[str, Any]:
    """Start topology *name*, connect the clients, run both phases, close everything."""
    channels = channel_names(name, plan.channels)
    assignments = [[channels[i % len(channels)]] for i in range(plan.clients)]
    subscribers = dict(Counter(a[0] for a in assignments))
    began = time.monotonic()
    with deployed(name, plan, redis_url, run_dir) as dep:
        started_s = time.monotonic() - began
        await gen.set_adapter(HeraldAdapter(), dep.address, dep.port)
        opened = await gen.open(
            dep.address, dep.port, assignments, probe_every=plan.probe_every,
            concurrency=500, timeout_s=plan.open_timeout_s,
        )  # fmt: skip
        result: dict[str, Any] = {
            "hosts": len(dep.hosts),
            "workers_per_host": plan.workers,
            "through_haproxy": dep.lb is not None,
            "url": f"ws://{dep.address}:{dep.port}/ws",
            "start_seconds": round(started_s, 2),
            "clients_opened": opened["opened"],
            "open_seconds": round(opened["seconds"], 2),
            "clients_per_host": dep.clients_per_host(),
            "phases": {},
        }
        if opened["opened"] < plan.clients:
            # Nothing to measure: the phases expect every client. Say why it fell short.
            result["note"] = f"opened {opened['opened']} of {plan.clients} clients"
            result["connection_trouble"] = connection_summary(await gen.stats())
            result["health_check_downs"] = dep.check_downs()
            await gen.close_all(timeout_s=20)
            return result
        async with HeraldPublisher(redis_url) as publisher:
            warm = [channels[n % len(channels)] for n in range(2 * len(channels))]
            for ch in warm:  # connect and load the script before the clock starts
                await publisher.publish(ch, data(-1))
            warm_deliveries = sum(subscribers[ch] for ch in warm)
            await wait_delivered(gen, warm_deliveries, time.monotonic() + 20.0)
            for mode in ("fixed_rate", "max"):
                result["phases"][mode] = await run_phase(
                    gen, publisher, dep, subscribers, mode, plan, redis_pid
                )
        result["health_check_downs"] = dep.check_downs()
        await gen.close_all(timeout_s=20)
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(topologies: dict[str, Any]) -> dict[str, Any]:
    """2 hosts / 1 host and HAProxy / direct, per phase, of the figures that compare."""
    keys = (
        "deliveries_per_s",
        "fleet_cpu_us_per_delivery",
        "fleet_and_haproxy_cpu_us_per_delivery",
    )
    pairs = {"two_hosts_over_one": ("haproxy_2", "haproxy_1"),
             "haproxy_over_direct": ("haproxy_1", "direct")}  # fmt: skip
    out: dict[str, Any] = {}
    for label, (top, bottom) in pairs.items():
        if not topologies.get(top, {}).get("phases") or not topologies.get(bottom, {}).get(
            "phases"
        ):
            continue
        out[label] = {}
        for mode in ("fixed_rate", "max"):
            a = topologies[top]["phases"][mode]
            b = topologies[bottom]["phases"][mode]
            figures = {k: ratio(a[k], b[k]) for k in keys}
            figures["latency_p50"] = ratio(a["latency"]["p50_ms"], b["latency"]["p50_ms"])
            figures["latency_p99"] = ratio(a["latency"]["p99_ms"], b["latency"]["p99_ms"])
            out[label][mode] = figures
    return out


async def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Every topology of *plan* in one run on one Redis (started in *workdir*); the result."""
    from tests.support.haproxy import short_run_dir
    from tests.support.redis_server import RedisServer

    if plan.clients > MAX_CONNECTIONS:
        raise ValueError(f"{plan.clients} clients > HAProxy's maxconn {MAX_CONNECTIONS}")
    if plan.clients > plan.processes * MAX_SOCKETS_PER_LOAD_PROCESS:
        raise ValueError(f"{plan.clients} clients need more than {plan.processes} processes")
    redis = RedisServer.launch(workdir / "redis", extra_args=["--maxclients", "10000"])
    gen = LoadGenerator(plan.processes, first_source=FIRST_SOURCE)
    topologies: dict[str, Any] = {}
    try:
        assert redis.pid is not None
        await gen.start()
        for name in plan.topologies:
            run_dir = short_run_dir()
            try:
                topologies[name] = await run_topology(
                    gen, name, plan, redis.url, redis.pid, run_dir
                )
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        await gen.stop()
        redis.close()
    return {
        "benchmark": "hosts",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
        "plan": {**asdict(plan), "load_processes": plan.processes},
        "setup": f"{plan.clients} Herald websocket clients from {plan.processes} load processes"
        f" (127.0.0.{FIRST_SOURCE}+), each subscribed to one of {plan.channels} channels;"
        " publisher.Publisher from the coordinator; one redis-server; hosts on 127.0.0.2/3 with"
        f" {plan.workers} workers each; HAProxy from deploy/haproxy.cfg.template; everything"
        " shares the machine's cores",
        "topologies": topologies,
        "ratios": ratios(topologies),
    }


def _parser() -> argparse.ArgumentParser:
    d = Plan()
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--workers", type=int, default=d.workers, help="workers per host")
    p.add_argument("--channels", type=int, default=d.channels)
    p.add_argument("--load-processes", type=int, default=d.load_processes, help="0: automatic")
    p.add_argument("--rate", type=float, default=d.rate_per_s, help="fixed-rate publications/s")
    p.add_argument("--rate-seconds", type=float, default=d.rate_seconds)
    p.add_argument("--max-publications", type=int, default=d.max_publications)
    p.add_argument("--max-seconds", type=float, default=d.max_seconds)
    p.add_argument("--window", type=int, default=d.window, help="publications ahead at max")
    p.add_argument("--probe-every", type=int, default=d.probe_every)
    p.add_argument("--topologies", default=",".join(TOPOLOGIES), help="comma-separated")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    names: Sequence[str] = tuple(t for t in args.topologies.split(",") if t)
    unknown = set(names) - set(TOPOLOGIES)
    if unknown:
        raise SystemExit(f"unknown topologies: {sorted(unknown)} (known: {TOPOLOGIES})")
    return Plan(
        clients=args.clients, workers=args.workers, channels=args.channels,
        load_processes=args.load_processes, rate_per_s=args.rate,
        rate_seconds=args.rate_seconds, max_publications=args.max_publications,
        max_seconds=args.max_seconds, window=args.window, probe_every=args.probe_every,
        topologies=tuple(names),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    plan = plan_from(args)
    with tempfile.TemporaryDirectory(prefix="herald-hosts-bench-") as tmp:
        result = asyncio.run(measure(plan, Path(tmp)))
    proc_measure.emit(result, args.out)


if __name__ == "__main__":
    main()
