"""The ratios and the bars of a run, computed from its results (bench/run.py writes them
into the JSON; bench/report.py prints them).

The input is the results as JSON (``dict[str, Any]``): the same functions read results
written by older runs, whose fields may differ from today's typed results.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

ResultsJson = dict[str, Any]

TARGET_ORDER = ("floor", "herald", "socketio")
"""The report's order of the targets it knows; any other target sorts after them, by name."""

QA_RATIO_BAR = 1.25
"""Herald's Q&A mix p99 against the floor's on the same workload (issue 15)."""
QA_P99_BAR_MS = 50.0


def target_key(target: str) -> tuple[int, str]:
    """Sort key of a target: the known ones in :data:`TARGET_ORDER`, then any other."""
    known = TARGET_ORDER.index(target) if target in TARGET_ORDER else len(TARGET_ORDER)
    return (known, target)


def sorted_runs(results: ResultsJson, scenario: str) -> list[dict[str, Any]]:
    """The runs of *scenario*, by target (floor, herald, socketio, others), then workers,
    then round."""
    runs: list[dict[str, Any]] = results["scenarios"].get(scenario, [])
    return sorted(
        runs, key=lambda r: (target_key(r["target"]), r.get("workers", 0), r.get("round", 0))
    )


def peers(results: ResultsJson) -> list[str]:
    """Every target other than Herald that has a run in *results*, in report order."""
    names = {
        run_["target"]
        for runs in results["scenarios"].values()
        for run_ in runs
        if isinstance(run_, dict) and "target" in run_
    }
    return sorted(names - {"herald"}, key=target_key)


def spread(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, min and max of *values* (one per round), and the values themselves."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "per_round": [round(v, digits) for v in values],
    }


def _by_round(
    results: ResultsJson,
    scenario: str,
    target: str,
    workers: int | None = None,
    window: int | None = None,
) -> dict[int, list[dict[str, Any]]]:
    """The points of *target* in *scenario*, per round (results without rounds: round 0)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for run_ in results["scenarios"].get(scenario, []):
        if run_["target"] == target and (workers is None or run_["workers"] == workers):
            out.setdefault(run_.get("round", 0), []).extend(
                p for p in run_["points"] if window is None or p.get("window") == window
            )
    return out


def _points(
    results: ResultsJson,
    scenario: str,
    target: str,
    workers: int | None = None,
    window: int | None = None,
) -> list[dict[str, Any]]:
    return [
        p
        for _, points in sorted(_by_round(results, scenario, target, workers, window).items())
        for p in points
    ]


def _at(points: list[dict[str, Any]], connections: int) -> dict[str, Any] | None:
    for p in points:
        if p["connections"] == connections:
            return p
    return None


def _windows(results: ResultsJson) -> list[int | None]:
    windows = results["settings"].get("broadcast_windows") or [None]
    return list(windows)


def ratio_row(peer: str, connections: int, pairs: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """One ratio row from (herald, peer) values, one pair per round: the ratio is the median
    of the rounds' ratios (each pairs runs made next to each other), with min and max; the
    herald and peer columns are the medians of their values."""
    per = [h / q for h, q in pairs]
    stats = spread(per)
    return {
        "connections": connections,
        "herald": statistics.median(h for h, _ in pairs),
        peer: statistics.median(q for _, q in pairs),
        "ratio": stats["median"],
        "ratio_min": stats["min"],
        "ratio_max": stats["max"],
        "rounds": len(pairs),
        "per_round": stats["per_round"],
    }


def _point_ratios(
    results: ResultsJson, scenario: str, key: str, window: int | None, peer: str
) -> list[dict[str, Any]]:
    herald = _by_round(results, scenario, "herald", 1, window)
    other = _by_round(results, scenario, peer, 1, window)
    counts: list[int] = []
    for round_ in sorted(herald):
        counts += [p["connections"] for p in herald[round_] if p["connections"] not in counts]
    rows = []
    for n in counts:
        pairs = []
        for round_ in sorted(set(herald) & set(other)):
            hp, pp = _at(herald[round_], n), _at(other[round_], n)
            if hp is not None and pp is not None and pp.get(key) and hp.get(key) is not None:
                pairs.append((float(hp[key]), float(pp[key])))
        if pairs:
            rows.append(ratio_row(peer, n, pairs))
    return rows


def _qa_step(run_: dict[str, Any], multiplier: float) -> dict[str, Any] | None:
    steps: list[dict[str, Any]] = run_.get("steps", [])
    for step in steps:
        if step["multiplier"] == multiplier:
            return step
    return None


def qa_ratios(results: ResultsJson, peer: str) -> dict[str, list[dict[str, Any]]]:
    """Herald's Q&A mix latency against *peer*'s on the same workload, per rate multiplier
    both ran in the same round: p50 and p99 ratios (median, min, max over the rounds), and
    for p99 the share of the gap that is Herald's own, (herald p99 - peer p99) / herald p99:
    the part of Herald's p99 the peer, with the same machine, Redis, load generator,
    population and publication stream, does not have."""
    runs = results["scenarios"].get("qa_mix", [])
    herald = {(r.get("round", 0), r["tabs"]): r for r in runs if r["target"] == "herald"}
    other = {(r.get("round", 0), r["tabs"]): r for r in runs if r["target"] == peer}
    out: dict[str, list[dict[str, Any]]] = {}
    tabs_all = sorted({tabs for _, tabs in herald})
    for tabs in tabs_all:
        keys = sorted(k for k in herald if k[1] == tabs and k in other)
        multipliers: list[float] = []
        for k in keys:
            multipliers += [
                s["multiplier"] for s in herald[k]["steps"] if s["multiplier"] not in multipliers
            ]
        for m in multipliers:
            for pct in ("p50_ms", "p99_ms"):
                pairs, opened = [], []
                for k in keys:
                    hs, ps = _qa_step(herald[k], m), _qa_step(other[k], m)
                    if hs is None or ps is None:
                        continue
                    h, q = hs["latency"][pct], ps["latency"][pct]
                    if h is None or not q:
                        continue
                    pairs.append((float(h), float(q)))
                    opened.append(herald[k].get("opened", tabs))
                if not pairs:
                    continue
                row = ratio_row(peer, min(opened), pairs)
                row["tabs"] = tabs
                row["multiplier"] = m
                if pct == "p99_ms":
                    share = spread([(h - q) / h if h else 0.0 for h, q in pairs])
                    row["herald_own_share"] = share["median"]
                    row["herald_own_share_min"] = share["min"]
                    row["herald_own_share_max"] = share["max"]
                out.setdefault(f"qa_mix.x{m}.{pct}.herald/{peer}", []).append(row)
    return out


def ratios(results: ResultsJson) -> dict[str, Any]:
    """herald/<peer> for every other target of the run, at every connection count measured
    for both (single worker: the same load on the same machine), and the Q&A mix's latency
    ratios (:func:`qa_ratios`). With several rounds, each ratio is the median over the
    rounds of the ratio within a round, with its min and max (:func:`ratio_row`)."""
    out: dict[str, Any] = {}
    cases: list[tuple[str, str, int | None]] = [
        ("broadcast", key, w)
        for w in _windows(results)
        for key in ("deliveries_per_server_cpu_s", "deliveries_per_s")
    ]
    cases.append(("idle", "rss_per_connection_kib", None))
    for scenario, key, window in cases:
        for peer in peers(results):
            rows = _point_ratios(results, scenario, key, window, peer)
            if rows:
                suffix = f".window{window}" if window is not None else ""
                out[f"{scenario}{suffix}.{key}.herald/{peer}"] = rows
    for peer in peers(results):
        out.update(qa_ratios(results, peer))
    return out


def _spread_text(row: dict[str, Any]) -> str:
    if row.get("rounds", 1) <= 1:
        return f"{row['ratio']:.2f}"
    return f"{row['ratio']:.2f} (min {row['ratio_min']:.2f}, max {row['ratio_max']:.2f})"


def _broadcast_bar(
    results: ResultsJson, peer: str, factor: float, window: int | None
) -> dict[str, Any] | None:
    rows = _point_ratios(results, "broadcast", "deliveries_per_server_cpu_s", window, peer)
    if not rows:
        return None
    top = max(rows, key=lambda r: r["connections"])
    rounds = top["rounds"]
    every = [_spread_text(r) for r in rows]
    return {
        "ratio": top["ratio"],
        "text": f"{_spread_text(top)} x at {top['connections']} connections "
        f"({top['herald']:,.0f} vs {top[peer]:,.0f}"
        + (f"; median of {rounds} interleaved rounds" if rounds > 1 else "")
        + f"); at {[r['connections'] for r in rows]} connections: {every}",
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
        n = max(p["connections"] for p in idle)
        values = [p["rss_per_connection_kib"] for p in idle if p["connections"] == n]
        value = statistics.median(values)
        rounds = (
            f" (median of {len(values)} rounds: min {min(values)}, max {max(values)})"
            if len(values) > 1
            else ""
        )
        out.append({
            "bar": "memory per idle connection <= 8 KiB at 20,000 connections per worker",
            "measured": f"{value} KiB per connection at {n} connections on "
            f"one worker{rounds} (RSS delta / N; 20,000 is above the 20,000 open-file limit "
            "of a process, so the largest count one worker can hold is used)",
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
    """Herald's Q&A mix at the nominal rate (the median p99 over the rounds), and its p99
    against the floor's on the same workload."""
    out: list[dict[str, Any]] = []
    by_tabs: dict[int, list[dict[str, Any]]] = {}
    for run_ in results["scenarios"].get("qa_mix", []):
        if run_["target"] == "herald" and run_["steps"]:
            by_tabs.setdefault(run_["tabs"], []).append(run_)
    floor = qa_ratios(results, "floor")
    for tabs, runs in sorted(by_tabs.items()):
        nominals = [r["steps"][0] for r in runs]
        p99s = [s["latency"]["p99_ms"] for s in nominals if s["latency"]["p99_ms"] is not None]
        p99 = statistics.median(p99s) if p99s else None
        drops = sum(s["drops"] for s in nominals)
        slow = sum(s["slow_disconnects"] or 0 for s in nominals)
        opened = min(r.get("opened", tabs) for r in runs)
        multipliers = [
            max((s["multiplier"] for s in r["steps"] if s["meets_bar"]), default=None) for r in runs
        ]
        rounds = (
            f" (median of {len(p99s)} rounds: min {min(p99s)}, max {max(p99s)})"
            if len(p99s) > 1
            else ""
        )
        nominal = nominals[0]
        out.append({
            "bar": "Q&A mix with 100,000 connections: p99 publish-to-receive <= 50 ms at the "
            "nominal rate, zero drops",
            "measured": f"{opened} connections, nominal {nominal['publications_per_s']} "
            f"publications/s ({nominal['deliveries_per_s']} deliveries/s): p99 {p99} ms"
            f"{rounds}, drops {drops}, slow disconnects {slow}; highest rate meeting the bar: "
            + ", ".join(f"x{m}" if m is not None else "none" for m in multipliers),
            "value": p99,
            "met": p99 is not None and p99 <= QA_P99_BAR_MS and drops == 0 and slow == 0
            and all(s["meets_bar"] for s in nominals) and tabs >= 100_000,
            "connections": opened,
        })  # fmt: skip
        m = nominals[0]["multiplier"]
        rows = [r for r in floor.get(f"qa_mix.x{m}.p99_ms.herald/floor", []) if r["tabs"] == tabs]
        if not rows:
            continue
        row = rows[0]
        at_19k = tabs <= 19_000
        met = row["ratio"] <= QA_RATIO_BAR and tabs >= 19_000
        if at_19k:
            met = met and row["herald"] <= QA_P99_BAR_MS
        out.append({
            "bar": f"Q&A mix p99 <= {QA_RATIO_BAR} x the floor's p99 on the same workload at "
            "19k and at 100k connections, and <= 50 ms at 19k",
            "measured": f"{row['connections']} connections, rate x{m}: herald p99 "
            f"{row['herald']} ms, floor p99 {row['floor']} ms, herald/floor "
            f"{_spread_text(row)} over {row['rounds']} interleaved round(s); share of the "
            f"gap that is Herald's own (herald p99 - floor p99) / herald p99: "
            f"{row['herald_own_share']:.2f} (min {row['herald_own_share_min']:.2f}, max "
            f"{row['herald_own_share_max']:.2f})",
            "value": row["ratio"],
            "met": met,
            "connections": row["connections"],
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
