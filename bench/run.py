"""Run the benchmark scenarios side by side and write bench/results/<name>.json + latest.json.

    .venv/bin/python -m bench.run [--scale smoke|quick|full]
        [--scenarios idle,broadcast,qa_mix,churn,storm] [--targets herald,floor,socketio]
        [--rounds N] [--name NAME] [--no-report]

Starts its own redis-server on a free port (never 6379) and the load processes
(bench/loadgen/), then runs each scenario (bench/scenarios/) against each target
(bench/targets.py) where it makes sense: idle, broadcast and the Q&A mix for every target
(the Q&A mix's Herald-only parts, tokens and offsets, are skipped for the others and the
results say so), churn and the reconnect storm for Herald (they need its history and
recovery). Idle, broadcast and the Q&A mix run their targets in interleaved rounds
(herald, floor, ..., herald, floor, ...; ``--rounds``, 3 by default, 1 at smoke scale), and
every ratio is the median over the rounds with its min and max. The JSON records the
machine, the scale's settings, every measurement, the ratios (herald/<every other target>)
and where each bar stands (bench/bars.py). ``bench.report`` turns it into REPORT.md with
plots (run at the end unless ``--no-report``).

Scales (bench/scales.py): ``smoke`` (a few hundred connections, seconds: the test suite runs
it), ``quick`` (10-20k connections, a few minutes), ``full`` (100,000 connections over 6
Herald workers and 6 load processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

from bench import measure
from bench.bars import bars, ratios
from bench.loadgen.generator import LoadGenerator
from bench.loadgen.herald import EdDSATokens, HeraldAdapter
from bench.loadgen.process import MAX_PER_PROCESS
from bench.scales import SCALES, Scale
from bench.scenarios import SCENARIOS
from bench.scenarios.harness import Bench
from bench.targets import TARGETS, Target
from tests.support.redis_server import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"
ALL_TARGETS = tuple(TARGETS)
"""Every target bench/targets.py defines, in its order."""


class MachineCpu(TypedDict):
    """Where the machine's CPU went during one scenario (the machine is shared)."""

    seconds: float
    machine_busy_cpu_s: float
    benchmark_cpu_s: float
    other_processes_cpu_s: float
    other_processes_share_of_machine: float


class _Results(TypedDict):
    started_at: str
    scale: str
    machine: dict[str, object]
    settings: dict[str, object]
    """The scale's fields, and what the command line chose."""
    scenarios: dict[str, Sequence[object]]
    """Scenario name -> its runs (bench/scenarios/<name>.py)."""
    machine_cpu: dict[str, MachineCpu]
    loadavg_at_start: tuple[float, float, float]


class Results(_Results, total=False):
    failed_scenarios: dict[str, str]
    """Scenario -> the exception that ended it (its runs are lost; the others are kept and
    the command exits with status 1)."""
    seconds: float
    notes: list[str]
    ratios: dict[str, Any]
    bars: list[dict[str, Any]]


def build_targets(
    names: list[str], tokens: EdDSATokens, herald_env: dict[str, str] | None = None
) -> dict[str, Target]:
    """The targets to run; Herald gets a token key (the Q&A mix has ``user:`` channels) and
    any *herald_env* overrides (recorded in the results' settings)."""
    out = {}
    for name in names:
        target = TARGETS[name]
        if name == "herald":
            target = dataclasses.replace(
                target,
                env={
                    **target.env,
                    **(herald_env or {}),
                    "HERALD_JWT_PUBLIC_KEY_PEM": tokens.public_pem,
                },
                adapter_factory=lambda: HeraldAdapter(tokens),
            )
        out[name] = target
    return out


def _settings(
    bench: Bench, scenario_names: list[str], target_names: list[str]
) -> dict[str, object]:
    herald = bench.targets.get("herald")
    return {
        **{k: v for k, v in dataclasses.asdict(bench.scale).items() if k != "notes"},
        "targets": target_names,
        "scenarios": scenario_names,
        "max_connections_per_load_process": MAX_PER_PROCESS,
        "load_sources": bench.gen.sources,
        "profile_s": bench.profile_s,
        "herald_env": {k: v for k, v in herald.env.items() if "PEM" not in k} if herald else {},
    }


async def _run_scenario(bench: Bench, name: str, results: Results) -> None:
    """Run scenario *name*; its runs and the machine's CPU meanwhile go into *results*."""
    bench.log(f"scenario {name}")
    t0, busy0, own0 = time.monotonic(), measure.machine_busy_s(), measure.own_tree_cpu_s()
    results["scenarios"][name] = await SCENARIOS[name](bench)
    elapsed = time.monotonic() - t0
    busy, own = measure.machine_busy_s() - busy0, measure.own_tree_cpu_s() - own0
    other = max(0.0, busy - own)
    results["machine_cpu"][name] = {
        "seconds": round(elapsed, 1),
        "machine_busy_cpu_s": round(busy, 1),
        "benchmark_cpu_s": round(own, 1),
        "other_processes_cpu_s": round(other, 1),
        "other_processes_share_of_machine": round(
            other / max(elapsed * (os.cpu_count() or 1), 1e-9), 3
        ),
    }
    bench.log(
        f"scenario {name} done in {elapsed:.0f} s (other processes on the machine used "
        f"{other:.1f} CPU-s meanwhile)"
    )


async def run(
    scale: Scale,
    scenario_names: list[str],
    target_names: list[str],
    log_dir: Path | None = None,
    herald_env: dict[str, str] | None = None,
    profile_s: float = 0.0,
) -> Results:
    """Run *scenario_names* against *target_names* at *scale*; the results as the JSON
    holds them (ratios and bars included, unless computing them failed: see the notes)."""
    targets = build_targets(target_names, EdDSATokens(), herald_env)
    log_dir = log_dir or RESULTS / "raw" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as workdir:
        redis = RedisServer.launch(Path(workdir) / "redis")
        gen = LoadGenerator(scale.load_processes)
        bench = Bench(
            gen, redis, targets, log_dir, scale, code_sha=measure.server_code_sha(),
            profile_s=profile_s,
        )  # fmt: skip
        started = time.time()
        results: Results = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "scale": scale.name,
            "machine": measure.machine(),
            "settings": _settings(bench, scenario_names, target_names),
            "scenarios": {},
            "machine_cpu": {},
            "loadavg_at_start": os.getloadavg(),
        }
        try:
            await gen.start()
            for name in scenario_names:
                try:
                    await _run_scenario(bench, name, results)
                except Exception as exc:  # noqa: BLE001 - the other scenarios' results are kept
                    bench.log(f"scenario {name} failed: {type(exc).__name__}: {exc}")
                    results.setdefault("failed_scenarios", {})[name] = (
                        f"{type(exc).__name__}: {exc}"
                    )
                    bench.notes.append(f"scenario {name} failed: {type(exc).__name__}: {exc}")
                    results["scenarios"].setdefault(name, [])
        finally:
            await gen.stop()
            redis.close()
    results["seconds"] = round(time.time() - started, 1)
    results["notes"] = bench.notes
    _add_ratios_and_bars(results)
    return results


def _add_ratios_and_bars(results: Results) -> None:
    as_json: dict[str, Any] = json.loads(json.dumps(results))
    try:
        results["ratios"] = ratios(as_json)
        results["bars"] = bars(as_json)
    except Exception as exc:  # noqa: BLE001 - the measurements are kept whatever happens here
        results.setdefault("ratios", {})
        results["bars"] = []
        results["notes"].append(f"ratios/bars failed: {type(exc).__name__}: {exc}")


def write_results(results: Results, name: str | None) -> Path:
    """Write *results* as bench/results/<name>.json and as latest.json; the first path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = name or f"{results['scale']}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = RESULTS / f"{stem}.json"
    text = json.dumps(results, indent=1)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
    p.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds of idle, broadcast and the Q&A mix (default: the scale's)",
    )
    p.add_argument("--name", help="results file name (default: <scale>-<timestamp>)")
    p.add_argument("--output", type=Path, help="write the JSON here only (no latest.json)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--log-dir", type=Path, help="server logs (default: bench/results/raw/...)")
    p.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="py-spy each server worker for SECONDS during qa_mix steps and the storm "
        "recovery (collapsed stacks in the log directory; CPU figures then include it)",
    )
    p.add_argument(
        "--herald-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Herald setting (HERALD_*), e.g. HERALD_PING_INTERVAL_S=60; repeatable",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="override a field of the scale, e.g. --set qa_workers=6 --set 'qa_multipliers=[1]'",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    for item in args.set:
        name, _, raw = item.partition("=")
        if name not in {f.name for f in dataclasses.fields(Scale)}:
            p.error(f"--set: the scale has no field {name!r}")
        scale = dataclasses.replace(scale, **{name: json.loads(raw)})
    if args.rounds is not None:
        if args.rounds < 1:
            p.error("--rounds: at least 1")
        scale = dataclasses.replace(scale, rounds=args.rounds)
    scenario_names = [s for s in args.scenarios.split(",") if s]
    target_names = [t for t in args.targets.split(",") if t]
    for s in scenario_names:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}")
    for t in target_names:
        if t not in ALL_TARGETS:
            p.error(f"unknown target {t!r}")
    import uvloop

    herald_env = dict(item.split("=", 1) for item in args.herald_env)
    results = uvloop.run(
        run(
            scale,
            scenario_names,
            target_names,
            args.log_dir,
            herald_env,
            args.profile,
        )
    )
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=1))
        path = args.output
    else:
        path = write_results(results, args.name)
    print(f"results: {path}")
    for bar in results["bars"]:
        print(f"  [{'met' if bar['met'] else 'NOT met'}] {bar['bar']}: {bar['measured']}")
    if not args.no_report and args.output is None:
        from bench import report

        print(f"report: {report.write_report(path)}")
    for name, error in results.get("failed_scenarios", {}).items():
        print(f"scenario {name} FAILED: {error}", file=sys.stderr)
    return 1 if results.get("failed_scenarios") else 0


if __name__ == "__main__":
    sys.exit(main())
