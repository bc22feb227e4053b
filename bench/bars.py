"""The ratios and the bars of a run, computed from its results (bench/run.py writes them
into the JSON; bench/report.py prints them).

The input is the results as JSON (``dict[str, Any]``): the same functions read results
written by older runs, whose fields may differ from today's typed results.
"""

from __future__ import annotations

from typing import Any

ResultsJson = dict[str, Any]

TARGET_ORDER = ("floor", "herald", "socketio")


def sorted_runs(results: ResultsJson, scenario: str) -> list[dict[str, Any]]:
    """The runs of *scenario*, by target (floor, herald, socketio), then workers."""
    runs: list[dict[str, Any]] = results["scenarios"].get(scenario, [])
    return sorted(runs, key=lambda r: (TARGET_ORDER.index(r["target"]), r["workers"]))


def _points(
    results: ResultsJson,
    scenario: str,
    target: str,
    workers: int | None = None,
    window: int | None = None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for run_ in results["scenarios"].get(scenario, []):
        if run_["target"] == target and (workers is None or run_["workers"] == workers):
            out.extend(p for p in run_["points"] if window is None or p.get("window") == window)
    return out


def _at(points: list[dict[str, Any]], connections: int) -> dict[str, Any] | None:
    for p in points:
        if p["connections"] == connections:
            return p
    return None


def _windows(results: ResultsJson) -> list[int | None]:
    windows = results["settings"].get("broadcast_windows") or [None]
    return list(windows)


def ratios(results: ResultsJson) -> dict[str, Any]:
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
    results: ResultsJson, peer: str, factor: float, window: int | None
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


def bars(results: ResultsJson) -> list[dict[str, Any]]:
    """Where each bar the benchmark is held to stands, from this run's measurements."""
    return [
        *_memory_bar(results),
        *_broadcast_bars(results),
        *_burst_bar(results),
        *_qa_bars(results),
        *_storm_bars(results),
    ]


def _memory_bar(results: ResultsJson) -> list[dict[str, Any]]:
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
    return out


def _broadcast_bars(results: ResultsJson) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
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
    return out


def _burst_bar(results: ResultsJson) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
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
    return out


def _qa_bars(results: ResultsJson) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
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
    return out


def _storm_bars(results: ResultsJson) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
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
