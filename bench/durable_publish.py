"""The cost of a durable publish: N sequential publishes with and without ``WAIT 1``.

    .venv/bin/python -m bench.durable_publish [--publishes 5000] [--rounds 10] \
        [--out bench/results/durable.json]

One primary and one replica (``redis-server --replicaof``) on loopback, started for the run
and stopped after it. Two publishers on the same primary: a plain one and one with
``durable_replicas=1``. The run alternates between them in *rounds* blocks so that both see
the same machine load; every publish is awaited before the next one (one publisher task, the
latency a backend's request sees). Reports publishes/s and p50/p90/p99/max latency per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.measure import emit
from publisher.publish import Publisher
from tests.support.redis_server import RedisServer

CHANNELS = [f"question:{n}" for n in range(1, 65)]
PAYLOAD = {"kind": "score", "answer": 9001, "score": 17, "text": "x" * 200}


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def publish_block(publisher: Publisher, count: int, start: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    began = time.perf_counter()
    for i in range(start, start + count):
        t0 = time.perf_counter()
        await publisher.publish(CHANNELS[i % len(CHANNELS)], PAYLOAD)
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - began


def summary(latencies: list[float], elapsed_s: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "publishes": len(ordered),
        "publishes_per_s": round(len(ordered) / elapsed_s, 1),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 3),
        "p90_ms": round(percentile(ordered, 0.90) * 1000, 3),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


async def measure(primary: RedisServer, publishes: int, rounds: int) -> dict[str, Any]:
    per_round = max(1, publishes // rounds)
    plain = Publisher(primary.url)
    durable = Publisher(primary.url, durable_replicas=1, durable_timeout_s=2.0)
    results: dict[str, tuple[list[float], float]] = {"plain": ([], 0.0), "durable": ([], 0.0)}
    try:
        for publisher in (plain, durable):  # connect and load the script: not measured
            await publish_block(publisher, 200, 0)
        for round_ in range(rounds):
            order = [("plain", plain), ("durable", durable)]
            if round_ % 2:
                order.reverse()
            for name, publisher in order:
                latencies, elapsed = await publish_block(publisher, per_round, round_ * per_round)
                kept, total = results[name]
                results[name] = (kept + latencies, total + elapsed)
    finally:
        await plain.close()
        await durable.close()
    return {name: summary(lat, elapsed) for name, (lat, elapsed) in results.items()}


def wait_link_up(replica: RedisServer, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while replica.client().info("replication").get("master_link_status") != "up":
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not sync with the primary")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=5000, help="per mode")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-durable-") as tmp:
        primary = RedisServer.launch(
            Path(tmp) / "primary", extra_args=["--repl-diskless-sync-delay", "0"]
        )
        replica: RedisServer | None = None
        try:
            replica = RedisServer.launch(
                Path(tmp) / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
            )
            wait_link_up(replica)
            modes = asyncio.run(measure(primary, args.publishes, args.rounds))
        finally:
            if replica is not None:
                replica.close()
            primary.close()
    plain, durable = modes["plain"], modes["durable"]
    result = {
        "benchmark": "durable_publish",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
        "setup": "one primary + one replica on loopback (no persistence), one client process;"
        " sequential awaited publishes of a ~250-byte payload over 64 channels",
        "publishes_per_mode": args.publishes,
        "rounds": args.rounds,
        "modes": modes,
        "durable_over_plain": {
            "throughput": round(durable["publishes_per_s"] / plain["publishes_per_s"], 3),
            "p50": round(durable["p50_ms"] / plain["p50_ms"], 3),
            "p99": round(durable["p99_ms"] / plain["p99_ms"], 3),
        },
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
