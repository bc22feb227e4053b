"""Publications per second through one plain Redis and through a 3-primary Redis Cluster.

    .venv/bin/python -m bench.shards [--processes 4] [--tasks 16] [--publications 200000] \
        [--max-seconds 30] [--out bench/results/shards.json]

In ONE run on this machine: (a) one plain redis-server, (b) a 3-primary Redis Cluster
(:mod:`tests.support.redis_cluster`, ``redis+cluster://`` URL), each started for the run and
stopped after it. The load is Herald's real publish path: ``publisher.Publisher`` (the publish
script: offset, history stream, (S)PUBLISH) from *processes* publisher processes, each running
*tasks* concurrent tasks that publish over 1,024 channels (a channel's keys share one hash
slot, so the channels spread over the shards). Each topology run is bounded both by count
(*publications* in total) and by time (*max-seconds*).

Reported per topology: publications/s (wall clock, from a common start), each redis-server
process's CPU seconds (utime + stime from ``/proc/<pid>/stat``) and publications per server
CPU-second, the commands each server processed (its share of the load), the load generator's
CPU seconds and the whole machine's busy CPU seconds (/proc/stat); then the ratio 3-shard /
1-shard. On a 2-core machine the three shards and the load generator share the same two
cores: the wall-clock ratio is bounded by the machine; the per-shard CPU-second figure is
what scales with hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import redis

from bench.measure import emit
from publisher.publish import Publisher

CHANNEL_COUNT = 1024
PAYLOAD = {"kind": "score", "answer": 9001, "score": 17, "text": "x" * 200}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_DELAY_S = 3.0


def channel(n: int) -> str:
    return f"question:{n % CHANNEL_COUNT + 1}"


def process_cpu_s(pid: int) -> float:
    """utime + stime of *pid* in seconds, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def _publish_worker(
    url: str, index: int, count: int, tasks: int, start_at: float, stop_at: float
) -> dict[str, Any]:
    publisher = Publisher(url)
    done = 0
    errors = 0
    try:
        for n in range(20):  # connect and load the script before the clock starts
            await publisher.publish(channel(index * 7919 + n), PAYLOAD)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = time.process_time()
        began = time.time()
        remaining = count

        async def one_task(task: int) -> None:
            nonlocal done, errors, remaining
            n = index * 100_003 + task * 1009
            while remaining > 0 and time.time() < stop_at:
                remaining -= 1
                n += 1
                try:
                    await publisher.publish(channel(n), PAYLOAD)
                except Exception:  # noqa: BLE001 - counted, reported
                    errors += 1
                else:
                    done += 1

        await asyncio.gather(*(one_task(t) for t in range(tasks)))
        ended = time.time()
        cpu_s = time.process_time() - cpu0
    finally:
        await publisher.close()
    return {"published": done, "errors": errors, "began": began, "ended": ended, "cpu_s": cpu_s}


def publish_worker(
    url: str, index: int, count: int, tasks: int, start_at: float, stop_at: float
) -> dict[str, Any]:
    """One publisher process: *tasks* concurrent tasks sharing *count* publications."""
    return asyncio.run(_publish_worker(url, index, count, tasks, start_at, stop_at))


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def commands_processed(port: int) -> int:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0) as client:
        return int(client.info("stats")["total_commands_processed"])


def run_load(
    url: str,
    servers: list[tuple[int, int]],
    *,
    processes: int,
    tasks: int,
    publications: int,
    max_s: float,
) -> dict[str, Any]:
    """Publish through *url* from *processes* processes; sample the servers' CPU around it.

    *servers* are (pid, port) of every redis-server of the topology.
    """
    pids = [pid for pid, _ in servers]
    per_process = max(1, publications // processes)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        start_at = time.time() + START_DELAY_S
        stop_at = start_at + max_s
        futures = [
            pool.submit(publish_worker, url, i, per_process, tasks, start_at, stop_at)
            for i in range(processes)
        ]
        time.sleep(max(0.0, start_at - time.time()))
        commands_before = [commands_processed(port) for _, port in servers]
        machine_before = machine_busy_s()
        cpu_before = {pid: process_cpu_s(pid) for pid in pids}
        workers = [future.result(timeout=max_s + 60.0) for future in futures]
        cpu_after = {pid: process_cpu_s(pid) for pid in pids}
        machine_after = machine_busy_s()
        commands = [
            commands_processed(port) - before
            for (_, port), before in zip(servers, commands_before, strict=True)
        ]
    published = sum(w["published"] for w in workers)
    elapsed = max(w["ended"] for w in workers) - min(w["began"] for w in workers)
    server_cpu = [round(cpu_after[pid] - cpu_before[pid], 2) for pid in pids]
    total_server_cpu = sum(server_cpu)
    return {
        "published": published,
        "errors": sum(w["errors"] for w in workers),
        "elapsed_s": round(elapsed, 3),
        "publications_per_s": round(published / elapsed, 1) if elapsed > 0 else 0.0,
        "server_cpu_s": server_cpu,
        "server_cpu_s_total": round(total_server_cpu, 2),
        "server_cpu_share_of_wall": [round(c / elapsed, 3) for c in server_cpu]
        if elapsed > 0
        else [],
        "publications_per_server_cpu_s": round(published / total_server_cpu, 1)
        if total_server_cpu > 0
        else None,
        "server_commands": commands,
        "load_generator_cpu_s": round(sum(w["cpu_s"] for w in workers), 2),
        "machine_busy_cpu_s": round(machine_after[0] - machine_before[0], 2),
        "machine_cpu_s_available": round(machine_after[1] - machine_before[1], 2),
        "hit_time_bound": published < per_process * processes,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the tests' helpers are only needed by the parent process.
    from tests.support.redis_cluster import RedisClusterTestbed
    from tests.support.redis_server import RedisServer

    load = {
        "processes": args.processes,
        "tasks": args.tasks,
        "publications": args.publications,
        "max_s": args.max_seconds,
    }
    topologies: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="herald-shards-") as tmp:
        single = RedisServer.launch(Path(tmp) / "single")
        try:
            assert single.pid is not None
            topologies["one_redis"] = run_load(single.url, [(single.pid, single.port)], **load)
            topologies["one_redis"]["url_form"] = "redis://"
        finally:
            single.close()
        cluster = RedisClusterTestbed.launch(Path(tmp) / "cluster", primaries=3)
        try:
            servers = [(node.pid, node.port) for node in cluster.nodes if node.pid is not None]
            topologies["cluster_3"] = run_load(cluster.url, servers, **load)
            topologies["cluster_3"]["url_form"] = "redis+cluster://"
        finally:
            cluster.close()
    return topologies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4, help="publisher processes")
    parser.add_argument("--tasks", type=int, default=16, help="concurrent tasks per process")
    parser.add_argument("--publications", type=int, default=200_000, help="per topology")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per topology")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    topologies = measure(args)
    one, three = topologies["one_redis"], topologies["cluster_3"]
    per_shard_one = one["publications_per_server_cpu_s"]
    per_shard_three = three["publications_per_server_cpu_s"]
    result = {
        "benchmark": "shards",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
        "setup": f"publisher.Publisher from {args.processes} processes x {args.tasks} tasks over"
        f" {CHANNEL_COUNT} channels, ~250-byte payload, no subscribers; servers without"
        " persistence on loopback; load generator and servers share the machine's cores",
        "topologies": topologies,
        "three_over_one": {
            "publications_per_s": round(three["publications_per_s"] / one["publications_per_s"], 3)
            if one["publications_per_s"]
            else None,
            "publications_per_server_cpu_s": round(per_shard_three / per_shard_one, 3)
            if per_shard_one and per_shard_three
            else None,
        },
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
