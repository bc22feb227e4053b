"""Run the benchmark scenarios side by side and write bench/results/<name>.json + latest.json.

    .venv/bin/python -m bench.run [--scale smoke|quick|full]
        [--scenarios idle,broadcast,qa_mix,churn,storm] [--targets herald,floor,socketio]
        [--name NAME] [--no-report]

Starts its own redis-server on a free port (never 6379) and the load processes
(bench/loadgen/engine.py), then runs each scenario (bench/scenarios.py) against each target
(bench/targets.py) where it makes sense: idle and broadcast for all three, the Q&A mix,
churn and the reconnect storm for Herald (they need its history and recovery). The JSON
records the machine, the scale's settings, every measurement, the ratios (herald/floor,
herald/socketio) and where each bar of issue 3 section 4 stands. ``bench.report`` turns it
into REPORT.md with plots (run at the end unless ``--no-report``).

Scales: ``smoke`` (a few hundred connections, seconds: the test suite runs it), ``quick``
(10-20k connections, a few minutes), ``full`` (issue 3's sizes: 100,000 connections over 6
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import measure, scenarios
from bench.loadgen.engine import MAX_PER_PROCESS, LoadGenerator
from bench.loadgen.herald import EdDSATokens, HeraldAdapter
from bench.targets import TARGETS, Target

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("idle", "broadcast", "qa_mix", "churn", "storm")
ALL_TARGETS = ("herald", "floor", "socketio")

Plans = dict[str, list[tuple[int, list[int]]]]
"""target -> [(workers, cumulative connection counts)]."""


@dataclass(frozen=True)
class Scale:
    name: str
    load_processes: int
    idle: Plans
    broadcast: Plans
    idle_window_s: float
    qa_tabs: int
    qa_workers: int
    qa_multipliers: list[float]
    qa_step_s: float
    churn_workers: int
    churn_rates: list[float]
    churn_step_s: float
    storm_tabs: int
    storm_workers: int
    qa_rate_boost: float = 1.0
    """Multiplies the nominal rate (smoke only: a few hundred tabs publish almost nothing
    at the nominal rate, and the smoke test needs publications to count)."""
    qa_probe_every: int = 10
    qa_lower_multipliers: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.1])
    """Tried in order when the nominal rate misses the bar, until one meets it."""
    broadcast_deliveries: int = 1_000_000
    """Deliveries per broadcast point (publications = this / connections, bounded)."""
    broadcast_deliveries_for: dict[str, int] = field(default_factory=dict)
    """Per-target overrides (python-socketio delivers ~30x slower: fewer, same bounds)."""
    broadcast_min_pubs: int = 20
    broadcast_max_pubs: int = 500
    broadcast_windows: tuple[int, ...] = (8, 1)
    """Publications allowed ahead of the clients; the first is the scenario's load (and the
    bars'), 1 is lockstep (no two publications ever ready together)."""
    broadcast_timeout_s: float = 300.0
    burst_size: int = 10
    churn_concurrency: int = 200
    storm_rate_multiplier: float = 1.0
    storm_concurrency: int = 3000
    storm_before_s: float = 3.0
    storm_after_s: float = 3.0
    storm_timeout_s: float = 180.0
    open_timeout_s: float = 240.0
    open_concurrency: int = 600
    settle_s: float = 2.0
    notes: list[str] = field(default_factory=list)


ONE = [(1, [100, 200])]
SCALES = {
    "smoke": Scale(
        name="smoke", load_processes=2,
        idle={"herald": ONE, "floor": ONE, "socketio": ONE},
        broadcast={"herald": [(1, [200])], "floor": [(1, [200])], "socketio": [(1, [200])]},
        idle_window_s=1.0, qa_tabs=300, qa_workers=2, qa_multipliers=[1.0], qa_step_s=2.0,
        qa_rate_boost=200.0, qa_probe_every=5, qa_lower_multipliers=[],
        churn_workers=1, churn_rates=[40.0], churn_step_s=2.0,
        storm_tabs=300, storm_workers=2, storm_rate_multiplier=100.0,
        storm_before_s=1.0, storm_after_s=1.0, storm_timeout_s=30.0, open_timeout_s=30.0,
        broadcast_deliveries=4000, broadcast_min_pubs=10, settle_s=0.3, burst_size=5,
    ),
    "quick": Scale(
        name="quick", load_processes=2,
        idle={
            "herald": [(1, [2000, 10000, 19000])],
            "floor": [(1, [2000, 10000, 19000])],
            "socketio": [(1, [2000, 10000, 19000])],
        },
        broadcast={
            "herald": [(1, [2000, 10000, 19000])],
            "floor": [(1, [2000, 10000, 19000])],
            "socketio": [(1, [2000, 10000, 19000])],
        },
        idle_window_s=27.0, qa_tabs=19000, qa_workers=2,
        qa_multipliers=[1.0, 2.0, 4.0, 8.0, 16.0], qa_step_s=26.0,
        churn_workers=1, churn_rates=[500.0, 1000.0, 2000.0, 4000.0], churn_step_s=10.0,
        storm_tabs=19000, storm_workers=2, broadcast_deliveries=600_000,
        broadcast_deliveries_for={"socketio": 150_000},
    ),
    "full": Scale(
        name="full", load_processes=6,
        idle={
            "herald": [(1, [5000, 10000, 19000]), (6, [50000, 100000])],
            "floor": [(1, [5000, 10000, 19000]), (6, [100000])],
            "socketio": [(1, [5000, 10000, 19000])],
        },
        broadcast={
            "herald": [(1, [2000, 10000, 19000]), (6, [100000])],
            "floor": [(1, [2000, 10000, 19000]), (6, [100000])],
            "socketio": [(1, [2000, 10000, 19000])],
        },
        idle_window_s=27.0, qa_tabs=100_000, qa_workers=6,
        qa_multipliers=[1.0, 2.0, 4.0, 8.0], qa_step_s=26.0,
        churn_workers=2, churn_rates=[1000.0, 2000.0, 4000.0], churn_step_s=15.0,
        storm_tabs=100_000, storm_workers=6, broadcast_deliveries=1_000_000,
        storm_rate_multiplier=0.2,
        broadcast_deliveries_for={"socketio": 200_000},
        open_timeout_s=400.0, storm_timeout_s=240.0,
    ),
}  # fmt: skip


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


async def run(
    scale: Scale,
    scenario_names: list[str],
    target_names: list[str],
    log_dir: Path | None = None,
    herald_env: dict[str, str] | None = None,
    profile_s: float = 0.0,
) -> dict[str, Any]:
    tokens = EdDSATokens()
    targets = build_targets(target_names, tokens, herald_env)
    workdir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    log_dir = log_dir or RESULTS / "raw" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = scenarios.RedisProcess(workdir / "redis")
    redis.start()
    gen = LoadGenerator(scale.load_processes)
    await gen.start()
    bench = scenarios.Bench(
        gen, redis, targets, log_dir, scale, code_sha=measure.server_code_sha(), profile_s=profile_s
    )
    started = time.time()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "scale": scale.name,
        "machine": measure.machine(),
        "settings": {
            **{k: v for k, v in dataclasses.asdict(scale).items() if k != "notes"},
            "targets": target_names,
            "scenarios": scenario_names,
            "max_connections_per_load_process": MAX_PER_PROCESS,
            "load_sources": gen.sources,
            "profile_s": profile_s,
            "herald_env": {k: v for k, v in targets["herald"].env.items() if "PEM" not in k}
            if "herald" in targets
            else {},
        },
        "scenarios": {},
        "machine_cpu": {},
        "loadavg_at_start": os.getloadavg(),
    }
    try:
        for name in scenario_names:
            bench.log(f"scenario {name}")
            t0, busy0, own0 = time.monotonic(), measure.machine_busy_s(), measure.own_tree_cpu_s()
            results["scenarios"][name] = await getattr(scenarios, name)(bench)
            elapsed = time.monotonic() - t0
            busy, own = measure.machine_busy_s() - busy0, measure.own_tree_cpu_s() - own0
            results["machine_cpu"][name] = {
                "seconds": round(elapsed, 1),
                "machine_busy_cpu_s": round(busy, 1),
                "benchmark_cpu_s": round(own, 1),
                "other_processes_cpu_s": round(max(0.0, busy - own), 1),
                "other_processes_share_of_machine": round(
                    max(0.0, busy - own) / max(elapsed * (os.cpu_count() or 1), 1e-9), 3
                ),
            }
            bench.log(
                f"scenario {name} done in {elapsed:.0f} s (other processes on the machine used "
                f"{max(0.0, busy - own):.1f} CPU-s meanwhile)"
            )
    finally:
        await gen.stop()
        redis.stop()
    results["seconds"] = round(time.time() - started, 1)
    results["notes"] = bench.notes
    try:
        results["ratios"] = ratios(results)
        results["bars"] = bars(results)
    except Exception as exc:  # noqa: BLE001 - the measurements are kept whatever happens here
        results.setdefault("ratios", {})
        results["bars"] = []
        results["notes"].append(f"ratios/bars failed: {type(exc).__name__}: {exc}")
    return results


# --- ratios and bars ------------------------------------------------------------------------


def _points(
    results: dict[str, Any],
    scenario: str,
    target: str,
    workers: int | None = None,
    window: int | None = None,
) -> list[dict[str, Any]]:
    out = []
    for run_ in results["scenarios"].get(scenario, []):
        if run_["target"] == target and (workers is None or run_["workers"] == workers):
            out.extend(p for p in run_["points"] if window is None or p.get("window") == window)
    return out


def _at(points: list[dict[str, Any]], connections: int) -> dict[str, Any] | None:
    for p in points:
        if p["connections"] == connections:
            return p
    return None


def _windows(results: dict[str, Any]) -> list[int | None]:
    windows = results["settings"].get("broadcast_windows") or [None]
    return list(windows)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """herald/floor and herald/socketio at every connection count measured for both
    (single worker: the same load on the same machine)."""
    out: dict[str, Any] = {}
    cases: list[tuple[str, str, int | None]] = [
        ("broadcast", key, w)
        for w in _windows(results)
        for key in ("deliveries_per_server_cpu_s", "deliveries_per_s")
    ]
    cases.append(("idle", "rss_per_connection_kib", None))
    for scenario, key, window in cases:
        herald = _points(results, scenario, "herald", 1, window)
        for peer in ("floor", "socketio"):
            peer_points = _points(results, scenario, peer, 1, window)
            rows = []
            for hp in herald:
                pp = _at(peer_points, hp["connections"])
                if pp is not None and pp.get(key):
                    rows.append(
                        {
                            "connections": hp["connections"],
                            "herald": hp[key],
                            peer: pp[key],
                            "ratio": round(hp[key] / pp[key], 3),
                        }
                    )
            if rows:
                suffix = f".window{window}" if window is not None else ""
                out[f"{scenario}{suffix}.{key}.herald/{peer}"] = rows
    return out


def _broadcast_bar(
    results: dict[str, Any], peer: str, factor: float, window: int | None
) -> dict[str, Any] | None:
    herald_b = _points(results, "broadcast", "herald", 1, window)
    peer_b = _points(results, "broadcast", peer, 1, window)
    pairs = [(h, q) for h in herald_b if (q := _at(peer_b, h["connections"])) is not None]
    if not pairs:
        return None
    hp, pp = max(pairs, key=lambda pair: pair[0]["connections"])
    ratio = hp["deliveries_per_server_cpu_s"] / max(pp["deliveries_per_server_cpu_s"], 1)
    every = [
        round(h["deliveries_per_server_cpu_s"] / max(q["deliveries_per_server_cpu_s"], 1), 2)
        for h, q in pairs
    ]
    return {
        "ratio": round(ratio, 3),
        "text": f"{ratio:.2f} x at {hp['connections']} connections "
        f"({hp['deliveries_per_server_cpu_s']:,} vs {pp['deliveries_per_server_cpu_s']:,}); "
        f"at {[h['connections'] for h, _ in pairs]} connections: {every}",
    }


def bars(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Where each bar of issue 3 section 4 stands, from this run's measurements."""
    out: list[dict[str, Any]] = []

    idle = _points(results, "idle", "herald", 1)
    if idle:
        top = max(idle, key=lambda p: p["connections"])
        value = top["rss_per_connection_kib"]
        out.append({
            "bar": "memory per idle connection <= 8 KiB at 20,000 connections per worker",
            "measured": f"{value} KiB per connection at {top['connections']} connections on "
            "one worker (RSS delta / N; 20,000 is above the 20,000 open-file limit of a "
            "process, so the largest count one worker can hold is used)",
            "value": value,
            "met": value <= 8.0,
        })  # fmt: skip

    windows = _windows(results)
    for peer, factor in (("floor", 0.9), ("socketio", 5.0)):
        main = _broadcast_bar(results, peer, factor, windows[0])
        if main is None:
            continue
        text = f"window {windows[0]} (the scenario's load): {main['text']}"
        for other in windows[1:]:
            extra = _broadcast_bar(results, peer, factor, other)
            if extra is not None:
                text += f". Lockstep (window {other}, nothing to coalesce): {extra['text']}"
        out.append({
            "bar": f"broadcast deliveries per server CPU-second >= {factor} x {peer}",
            "measured": text,
            "value": main["ratio"],
            "met": main["ratio"] >= factor,
        })  # fmt: skip

    herald_b = _points(results, "broadcast", "herald", 1)
    bursts = [p["burst"] for p in herald_b if "burst" in p]
    if bursts:
        worst = max(b["writes_per_connection"] for b in bursts)
        k = bursts[0]["publications"]
        out.append({
            "bar": "several frames for one connection that are ready together go out in one "
            "write",
            "measured": f"{k} publications at once: {worst} write calls per connection at "
            f"worst (frames per write: {[b['frames_per_write'] for b in bursts]})",
            "value": worst,
            "met": worst <= 1.5,
        })  # fmt: skip

    for run_ in results["scenarios"].get("qa_mix", []):
        steps = run_["steps"]
        if not steps:
            continue
        nominal = steps[0]
        passing = [s for s in steps if s["meets_bar"]]
        best = max(passing, key=lambda s: s["multiplier"]) if passing else None
        out.append({
            "bar": "Q&A mix with 100,000 connections: p99 publish-to-receive <= 50 ms at the "
            "nominal rate, zero drops",
            "measured": f"{run_['opened']} connections, nominal {nominal['publications_per_s']} "
            f"publications/s ({nominal['deliveries_per_s']} deliveries/s): p99 "
            f"{nominal['latency']['p99_ms']} ms, drops {nominal['drops']}, slow disconnects "
            f"{nominal['slow_disconnects']}; highest rate meeting the bar: "
            + (f"x{best['multiplier']} = {best['publications_per_s']} publications/s "
               f"({best['deliveries_per_s']} deliveries/s)" if best else "none"),
            "value": nominal["latency"]["p99_ms"],
            "met": bool(nominal["meets_bar"]) and run_["tabs"] >= 100_000,
            "connections": run_["opened"],
        })  # fmt: skip

    for run_ in results["scenarios"].get("storm", []):
        t = run_.get("time_to_recover_s")
        out.append({
            "bar": "reconnect storm of 100,000 clients: all recovered in <= 30 s, nothing lost",
            "measured": f"{run_['ready_after']}/{run_['tabs']} clients recovered "
            f"{t} s after the restarted fleet was ready ({run_['outage_s']} s from the kill); "
            f"lost {run_['lost']}, recovery failed {run_['recovery_failed']}",
            "value": t,
            "met": t is not None and t <= 30.0 and run_["lost"] == 0
            and run_["ready_after"] == run_["tabs"] and run_["tabs"] >= 100_000,
            "connections": run_["tabs"],
        })  # fmt: skip
    return out


def write_results(results: dict[str, Any], name: str | None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = name or f"{results['scale']}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = RESULTS / f"{stem}.json"
    text = json.dumps(results, indent=1)
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--targets", default=",".join(ALL_TARGETS))
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
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    for item in args.set:
        name, _, raw = item.partition("=")
        if name not in {f.name for f in dataclasses.fields(Scale)}:
            p.error(f"--set: the scale has no field {name!r}")
        scale = dataclasses.replace(scale, **{name: json.loads(raw)})
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
