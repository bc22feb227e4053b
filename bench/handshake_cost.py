"""Worker CPU per reconnecting client: Herald's fast open, Herald's connect-then-subscribe,
and the floor server, interleaved on one worker each (issue 15, items 1 and 7).

    .venv/bin/python -m bench.handshake_cost [--connections 4000] [--rounds 3] [--missed 3]
        [--output bench/results/handshake-cost.json]

Each round runs every variant in turn (herald-fast, herald-classic, floor, then again): one
worker on a fresh port over one redis-server; the load processes open N connections, each
subscribing two channels (``question:<i>`` of 500, and ``questions:new``); the bench publishes
``--missed`` publications to each channel; then every connection is aborted and reconnects at
once with its positions (the reconnect storm in small: Herald recovers and replays what was
missed, the floor just subscribes again). Measured over the reconnect: the worker's CPU
(user + system, its whole process tree) per connection, and connections ready per second.
Every figure is the median with min and max over the rounds, and the ratios are taken round
by round (variants minutes apart on a shared machine drift; neighbours in one round less).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import measure
from bench.loadgen.adapters import Adapter
from bench.loadgen.generator import LoadGenerator
from bench.loadgen.herald import HeraldAdapter
from bench.targets import TARGETS, Target, stop
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
QUESTIONS = 500
VARIANTS = ("herald-fast", "herald-classic", "floor")


def _variant(name: str) -> tuple[Target, Adapter]:
    if name == "herald-fast":
        return TARGETS["herald"], HeraldAdapter(fast_open=True)
    if name == "herald-classic":
        return TARGETS["herald"], HeraldAdapter(fast_open=False)
    target = TARGETS[name]
    return target, target.adapter


async def _one(
    gen: LoadGenerator, redis_url: str, variant: str, connections: int, missed: int
) -> dict[str, float]:
    target, adapter = _variant(variant)
    port = free_port(HOST)
    proc = await asyncio.to_thread(target.start, port, redis_url, 1)
    try:
        await gen.set_adapter(adapter, HOST, port)
        assignments = [
            [f"question:{i % QUESTIONS + 1}", "questions:new"] for i in range(connections)
        ]
        opened = await gen.open(HOST, port, assignments, timeout_s=300.0, concurrency=500)
        async with target.publisher(redis_url) as publisher:
            for n in range(missed):
                for q in range(1, QUESTIONS + 1):
                    await publisher.publish(f"question:{q}", {"n": n})
                await publisher.publish("questions:new", {"n": n})
        await asyncio.sleep(1.0)  # delivered to everyone before the drop
        before = measure.sample_tree(proc.pid)
        started = time.monotonic()
        done = await gen.reconnect_all(HOST, port, concurrency=1000, timeout_s=300.0)
        seconds = time.monotonic() - started
        after = measure.sample_tree(proc.pid)
        await gen.close_all(timeout_s=30.0)
    finally:
        stop(proc)
    cpu_s = after.cpu_s - before.cpu_s
    return {
        "opened": opened["opened"],
        "reconnected": done["reconnected"],
        "retries": done["retries"],
        "seconds": round(seconds, 3),
        "worker_cpu_s": round(cpu_s, 3),
        "cpu_ms_per_connection": round(1000.0 * cpu_s / max(1, done["reconnected"]), 4),
        "ready_per_s": round(done["reconnected"] / max(seconds, 1e-9), 1),
        "ready_per_worker_cpu_s": round(done["reconnected"] / max(cpu_s, 1e-9), 1),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def summarise(rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Per variant the median/min/max of each figure; the ratios round by round."""
    figures = ("cpu_ms_per_connection", "ready_per_s", "ready_per_worker_cpu_s")
    out: dict[str, Any] = {
        v: {f: _spread([r[v][f] for r in rounds]) for f in figures} for v in rounds[0]
    }
    ratios: dict[str, Any] = {}
    pairs = [
        ("herald-fast", "herald-classic"),
        ("herald-fast", "floor"),
        ("herald-classic", "floor"),
    ]
    names = {
        "cpu_ms_per_connection": "cpu_per_connection",
        "ready_per_worker_cpu_s": "ready_per_worker_cpu_s",
    }
    for a, b in pairs:
        if a not in rounds[0] or b not in rounds[0]:
            continue
        for figure, name in names.items():
            # A round too small to show any CPU (0 jiffies) gives no ratio.
            each = [r[a][figure] / r[b][figure] for r in rounds if r[a][figure] and r[b][figure]]
            ratios[f"{name} {a}/{b}"] = _spread(each) if each else None
    out["ratios"] = ratios
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = [v for v in args.variants.split(",") if v]
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="herald-handshake-") as workdir:
        redis = RedisServer.launch(Path(workdir) / "redis")
        gen = LoadGenerator(2)
        try:
            await gen.start()
            for i in range(args.rounds):
                this: dict[str, dict[str, float]] = {}
                for variant in variants:
                    this[variant] = await _one(
                        gen, redis.url, variant, args.connections, args.missed
                    )
                    print(f"round {i + 1} {variant}: {json.dumps(this[variant])}", flush=True)
                rounds.append(this)
        finally:
            await gen.stop()
            redis.close()
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": measure.machine(),
        "loadavg_at_end": list(os.getloadavg()),
        "settings": {
            "connections": args.connections,
            "rounds": args.rounds,
            "missed": args.missed,
            "variants": variants,
        },
        "rounds": rounds,
        "summary": summarise(rounds),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.handshake_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--connections", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--missed", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--output", type=Path, default=ROOT / "bench/results/handshake-cost.json")
    args = p.parse_args(argv)
    import uvloop

    results = uvloop.run(run(args))
    args.output.write_text(json.dumps(results, indent=1))
    print(json.dumps(results["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
