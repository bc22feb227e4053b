"""Scenario d, churn: connect + subscribe + close, sustained at increasing rates (Herald).

Each rate of the scale runs for ``churn_step_s``; the next rate runs only while the previous
one was sustained (every cycle completed, at least 95% of the rate achieved).
"""

from __future__ import annotations

from typing import TypedDict

from bench.loadgen.churn import ChurnPlan
from bench.loadgen.results import ChurnCounts
from bench.scenarios.harness import HOST, Bench, running
from bench.scenarios.summary import Latency, percentiles

CHANNEL = "question:1"


class ChurnStep(ChurnCounts):
    target_rate_per_s: float
    achieved_per_s: float
    count_expected: int
    cycle: Latency
    server_cpu_s: float
    server_cpu_ms_per_cycle: float
    sustained: bool


class ChurnRun(TypedDict):
    target: str
    workers: int
    steps: list[ChurnStep]


async def run(bench: Bench) -> list[ChurnRun]:
    """One run on Herald (none when Herald is not among the run's targets)."""
    target = bench.targets.get("herald")
    if target is None:
        return []
    scale = bench.scale
    steps: list[ChurnStep] = []
    async with running(bench, target, scale.churn_workers) as srv:
        for rate in scale.churn_rates:
            await bench.gen.reset()
            s0 = srv.sample()
            expected = int(rate * scale.churn_step_s)
            plan = ChurnPlan(
                (CHANNEL,), rate_per_s=rate, duration_s=scale.churn_step_s, max_count=expected,
                concurrency=scale.churn_concurrency,
            )  # fmt: skip
            r = await bench.gen.churn(HOST, srv.port, plan)
            s1 = srv.sample()
            lat = percentiles(r["cycle_ms"])
            achieved = r["completed"] / max(r["seconds"], 1e-9)
            cpu = s1.cpu_s - s0.cpu_s
            step: ChurnStep = {
                "target_rate_per_s": rate,
                "achieved_per_s": round(achieved, 1),
                "launched": r["launched"],
                "completed": r["completed"],
                "failed": r["failed"],
                "errors": r["errors"],
                "throttled_ticks": r["throttled_ticks"],
                "seconds": r["seconds"],
                "count_expected": expected,
                "cycle": lat,
                "server_cpu_s": round(cpu, 3),
                "server_cpu_ms_per_cycle": round(1000 * cpu / max(r["completed"], 1), 3),
                "sustained": r["failed"] == 0
                and r["completed"] >= 0.99 * expected
                and achieved >= 0.95 * rate,
            }
            steps.append(step)
            bench.log(
                f"churn {rate}/s: {step['completed']} done, {achieved:.0f}/s, "
                f"failed {step['failed']}, p99 cycle {lat['p99_ms']} ms"
            )
            if not step["sustained"]:
                break
    return [{"target": "herald", "workers": scale.churn_workers, "steps": steps}]
