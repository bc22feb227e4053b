"""Scenario c, the Q&A mix: the Q&A population (bench/workload.py) on every target.

Publications go through each target's publishing path (Herald's real one: script, stream,
pub/sub; the floor's ``PUBLISH floor:<channel>``; ...) at the nominal rate, then at multiples
of it until the bar breaks (p99 publish-to-receive above 50 ms, a drop, or a slow-client
disconnect); when the nominal rate already breaks it, at fractions of it until one meets it.

Every target gets the same workload: the same population (same seed: the same channels on
the same connections), the same publication stream at each rate (the channel sequence is
seeded per step from the multiplier), the same probes (one connection in
``scale.qa_probe_every``). Herald-only parts are skipped for the others and each run lists
them under ``skipped``: tokens (Herald lets a connection subscribe ``user:<id>`` only with a
token for that user; the peers let anyone), offsets (only Herald's frames carry one, so
``gaps`` is 0 elsewhere; ``verify`` still counts every missing publication) and the
slow-disconnect metric (``slow_disconnects`` is None elsewhere; a peer that cuts a slow
client shows it in ``lost_unexpectedly`` and as missing publications).

The targets run in rounds (``scale.rounds``; herald, floor, ..., herald, floor, ...): the
ratios (bench/bars.py) pair the runs of one round and give the median, min and max.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import TypedDict

from bench.loadgen.results import Verify
from bench.scenarios.harness import (
    HOST,
    Bench,
    Server,
    cpu_of_loadgen,
    finish_profiles,
    interleaved,
    running,
    start_profiles,
    wait_publications,
)
from bench.scenarios.publishing import RatePublisher
from bench.scenarios.summary import (
    ConnectionSummary,
    Latency,
    cdf,
    connection_summary,
    percentiles,
)
from bench.targets import AnyPublisher, Target
from bench.workload import NOMINAL, Population

P99_BAR_MS = 50.0
_LATE_HANDSHAKES_S = 60.0


class StepRates(TypedDict):
    question: float
    user: float
    questions_new: float


class QaStep(ConnectionSummary):
    multiplier: float
    rates_per_s: StepRates
    publications: int
    publish_failures: int
    publish_errors: dict[str, int]
    publish_retries: int
    """Publications Herald's bench publisher sent again with their event id (targets.py)."""
    publisher_late_ticks: int
    seconds: float
    publications_per_s: float
    expected_deliveries_per_s: int
    deliveries: int
    deliveries_per_s: int
    server_cpu_s: float
    server_cpu_percent: float
    loadgen_cpu_s: float
    redis_cpu_s: float
    latency: Latency
    latency_cdf: list[list[float]]
    drops: int
    gaps: int
    verify: Verify
    slow_disconnects: int | None
    """Herald's 4001 disconnects (its metric); None for targets without that metric."""
    meets_bar: bool


class _QaRun(TypedDict):
    target: str
    round: int
    """Which round of the run (the targets run in rounds: herald, floor, ..., herald, ...)."""
    skipped: list[str]
    """What of the Q&A mix this target does not do (Herald-only parts), for the reader."""
    workers: int
    tabs: int
    questions: int
    subscriptions: int
    nominal_rates_per_100k_tabs: dict[str, float]
    rate_boost: float
    steps: list[QaStep]


class QaRun(_QaRun, total=False):
    opened: int
    open_seconds: float


HERALD_ONLY = {
    "tokens": "no connection tokens: the target lets any connection subscribe a user:<id> "
    "channel (Herald requires a token for that user)",
    "offsets": "no offsets in its frames: gaps are not detected (counted 0); missing "
    "publications are still counted per client (verify)",
    "slow_metric": "no slow-disconnect metric: slow_disconnects is None; a client the target "
    "cuts shows in lost_unexpectedly and as missing publications",
}


def skipped_for(target: str) -> list[str]:
    """The Herald-only parts of the Q&A mix that *target* does not do."""
    return [] if target == "herald" else list(HERALD_ONLY.values())


def qa_target_names(run_targets: list[str], qa_targets: tuple[str, ...] | list[str]) -> list[str]:
    """The run's targets that run the Q&A mix, in the run's order (*qa_targets*: the scale's
    choice; empty means all)."""
    return [name for name in run_targets if not qa_targets or name in qa_targets]


async def run(bench: Bench) -> list[QaRun]:
    """One run per target and round, interleaved (herald, floor, ..., herald, floor, ...)."""
    scale = bench.scale
    names = qa_target_names(list(bench.targets), scale.qa_targets)
    plans = {name: [(scale.qa_workers, [scale.qa_tabs])] for name in names}
    runs = []
    for round_, name, _, _ in interleaved(names, plans, scale.rounds):
        if scale.rounds > 1:
            bench.log(f"qa_mix round {round_ + 1}/{scale.rounds}: {name}")
        runs.append(await _run(bench, bench.targets[name], round_))
    return runs


async def _run(bench: Bench, target: Target, round_: int) -> QaRun:
    scale = bench.scale
    pop = Population(scale.qa_tabs)
    result: QaRun = {
        "target": target.name,
        "round": round_,
        "skipped": skipped_for(target.name),
        "workers": scale.qa_workers,
        "tabs": pop.tabs,
        "questions": pop.questions,
        "subscriptions": sum(pop.subscribers.values()),
        "nominal_rates_per_100k_tabs": dataclasses.asdict(NOMINAL),
        "rate_boost": scale.qa_rate_boost,
        "steps": [],
    }
    async with running(bench, target, scale.qa_workers) as srv:
        r = await bench.gen.open(
            HOST, srv.port, pop.assignments, probe_every=scale.qa_probe_every,
            timeout_s=scale.open_timeout_s, concurrency=scale.open_concurrency,
        )  # fmt: skip
        result["opened"] = r["opened"]
        result["open_seconds"] = round(r["seconds"], 2)
        if r["opened"] < pop.tabs:
            bench.notes.append(
                f"qa_mix {target.name} round {round_}: opened {r['opened']} of {pop.tabs}"
            )
        async with target.publisher(bench.redis.url) as publisher:
            result["steps"] = await _steps(bench, srv, publisher, pop)
    return result


def stream_seed(multiplier: float) -> int:
    """The seed of a step's publication stream: the same channels in the same order for
    every target (and every round) at the same rate."""
    return round(multiplier * 1000) * 7919 + 17


async def _steps(
    bench: Bench, srv: Server, publisher: AnyPublisher, pop: Population
) -> list[QaStep]:
    """Up from the nominal rate until the bar breaks; if the nominal rate already breaks
    it, down until a rate meets it (the highest rate that still does)."""
    scale = bench.scale
    steps: list[QaStep] = []
    for multiplier in scale.qa_multipliers:
        steps.append(await _step(bench, srv, publisher, pop, multiplier))
        if not steps[-1]["meets_bar"]:
            break
    if steps and not steps[0]["meets_bar"]:
        for multiplier in scale.qa_lower_multipliers:
            steps.append(await _step(bench, srv, publisher, pop, multiplier))
            if steps[-1]["meets_bar"]:
                break
    return steps


async def _settle(bench: Bench) -> None:
    """Let the open's late handshakes finish (bounded), then zero the counters."""
    await asyncio.sleep(1.0)
    deadline = time.monotonic() + _LATE_HANDSHAKES_S
    while time.monotonic() < deadline:
        progress = await bench.gen.progress()
        if progress["ready"] >= progress["open"]:
            break
        await asyncio.sleep(0.5)
    await bench.gen.reset()
    await bench.gen.latencies()


async def _step(
    bench: Bench, srv: Server, publisher: AnyPublisher, pop: Population, multiplier: float
) -> QaStep:
    scale = bench.scale
    rates = NOMINAL.scaled(pop.tabs, multiplier * scale.qa_rate_boost)
    await _settle(bench)
    pop.rng = random.Random(stream_seed(multiplier))
    slow0 = srv.metric("herald_disconnects_total", code="4001")
    s0, lg0, r0 = srv.sample(), await cpu_of_loadgen(bench), bench.redis_cpu_s()
    t0 = time.monotonic()
    rp = RatePublisher(publisher, pop)
    retries0 = publisher.retries
    profiles = start_profiles(bench, srv, f"qa-x{multiplier}")
    await rp.run(rates, scale.qa_step_s)
    t_pub = time.monotonic() - t0
    await finish_profiles(profiles)
    expected = sum(count * pop.subscribers.get(ch, 0) for ch, count in rp.counts.items())
    stats = await wait_publications(bench, expected, 15.0)
    t1 = time.monotonic()
    s1, lg1, r1 = srv.sample(), await cpu_of_loadgen(bench), bench.redis_cpu_s()
    verify = await bench.gen.verify(dict(rp.counts))
    latencies = await bench.gen.latencies()
    slow1 = srv.metric("herald_disconnects_total", code="4001")
    slow = int((slow1 or 0.0) - (slow0 or 0.0)) if srv.target.name == "herald" else None
    lat = percentiles(latencies)
    published = rp.published
    drops = verify["missing"] + stats["gaps"]
    delivered = stats["publications"] - stats["duplicates"]
    p99 = lat["p99_ms"]
    bench.log(
        f"qa_mix {srv.target.name} x{multiplier}: {published / max(t_pub, 1e-9):.0f} pub/s, "
        f"{delivered / max(t_pub, 1e-9):.0f} deliveries/s, p99 {p99} ms, drops {drops} "
        f"(+{verify['missing_never_ready']} at {verify['clients_never_ready']} clients never "
        f"ready), slow {slow}"
    )
    return {
        "multiplier": multiplier,
        "rates_per_s": {
            "question": round(rates.question_per_s, 2),
            "user": round(rates.user_per_s, 2),
            "questions_new": rates.questions_new_per_s,
        },
        "publications": published,
        "publish_failures": rp.failed,
        "publish_errors": dict(rp.errors),
        "publish_retries": publisher.retries - retries0,
        "publisher_late_ticks": rp.late_ticks,
        "seconds": round(t_pub, 2),
        "publications_per_s": round(published / max(t_pub, 1e-9), 1),
        "expected_deliveries_per_s": round(pop.expected_deliveries_per_s(rates)),
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / max(t_pub, 1e-9)),
        "server_cpu_s": round(s1.cpu_s - s0.cpu_s, 3),
        "server_cpu_percent": round(100 * (s1.cpu_s - s0.cpu_s) / max(t1 - t0, 1e-9), 1),
        "loadgen_cpu_s": round(lg1 - lg0, 3),
        "redis_cpu_s": round(r1 - r0, 3),
        "latency": lat,
        "latency_cdf": cdf(latencies),
        "drops": drops,
        "gaps": stats["gaps"],
        "verify": verify,
        "slow_disconnects": slow,
        "meets_bar": p99 is not None and p99 <= P99_BAR_MS and drops == 0 and not slow,
        **connection_summary(stats),
    }
