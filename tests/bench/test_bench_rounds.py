"""Interleaved rounds and the ratio statistics of the benchmark (bench/scenarios/harness.py,
bench/bars.py, bench/report.py), without a server: synthetic results in, ratios out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.bars import bars, peers, qa_ratios, ratios, sorted_runs, spread
from bench.report import _qa, _qa_against_peers, _ratios, for_plots
from bench.scales import SCALES
from bench.scenarios.harness import interleaved
from bench.scenarios.qa_mix import qa_target_names, skipped_for, stream_seed
from bench.workload import NOMINAL, Population


def test_rounds_alternate_the_targets_plan_by_plan() -> None:
    plans = {
        "herald": [(1, [10, 20]), (6, [100])],
        "floor": [(1, [10, 20]), (6, [100])],
        "socketio": [(1, [10, 20])],
    }
    order = interleaved(["herald", "floor", "socketio", "socketio-node"], plans, 3)
    assert [(r, name, w) for r, name, w, _ in order] == [
        (r, name, w)
        for r in range(3)
        for name, w in (
            ("herald", 1), ("floor", 1), ("socketio", 1), ("herald", 6), ("floor", 6),
        )
    ]  # fmt: skip
    assert order[0][3] == [10, 20]


def test_rounds_follow_the_runs_target_order_and_skip_targets_without_plans() -> None:
    plans = {"herald": [(1, [10])], "floor": [(1, [10])], "socketio-node": [(2, [10])]}
    order = interleaved(["socketio-node", "floor", "herald"], plans, 2)
    assert [name for _, name, _, _ in order] == [
        "socketio-node", "floor", "herald", "socketio-node", "floor", "herald",
    ]  # fmt: skip
    assert interleaved(["herald"], {"floor": [(1, [10])]}, 3) == []
    assert len(interleaved(["herald"], plans, 0)) == 1  # at least one round


def test_scales_interleave_three_rounds_except_smoke() -> None:
    assert SCALES["smoke"].rounds == 1
    assert SCALES["quick"].rounds >= 3
    assert SCALES["full"].rounds >= 3


def test_qa_mix_runs_on_every_target_unless_the_scale_chooses() -> None:
    assert qa_target_names(["herald", "floor", "socketio"], ()) == ["herald", "floor", "socketio"]
    assert qa_target_names(["floor", "herald", "socketio"], ("herald", "floor")) == [
        "floor",
        "herald",
    ]
    assert skipped_for("herald") == []
    assert skipped_for("floor") and skipped_for("socketio-node") == skipped_for("floor")


def test_the_publication_stream_is_the_same_for_every_target_at_a_rate() -> None:
    import random

    rates = NOMINAL.scaled(2000, 5.0)

    def stream(multiplier: float) -> list[str]:
        pop = Population(2000)
        pop.rng = random.Random(stream_seed(multiplier))
        return [pop.draw_event(rates) for _ in range(300)]

    assert stream(1.0) == stream(1.0)
    assert stream(1.0) != stream(2.0)


def test_spread_is_median_min_max() -> None:
    assert spread([1.13, 0.81, 0.85]) == {
        "median": 0.85, "min": 0.81, "max": 1.13, "per_round": [1.13, 0.81, 0.85],
    }  # fmt: skip
    assert spread([1.0, 2.0])["median"] == 1.5


def _broadcast_run(target: str, round_: int, values: dict[int, float]) -> dict[str, Any]:
    return {
        "target": target,
        "workers": 1,
        "round": round_,
        "points": [
            {"connections": n, "window": 1, "deliveries_per_server_cpu_s": v,
             "deliveries_per_s": v / 2}
            for n, v in values.items()
        ],
    }  # fmt: skip


def _qa_step(p50: float, p99: float, multiplier: float = 1.0) -> dict[str, Any]:
    return {
        "multiplier": multiplier,
        "latency": {"samples": 100, "p50_ms": p50, "p99_ms": p99},
        "meets_bar": p99 <= 50,
        "drops": 0,
        "slow_disconnects": 0,
        "publications_per_s": 10.0,
        "deliveries_per_s": 100,
    }


def _qa_run(target: str, round_: int, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"target": target, "round": round_, "tabs": 19000, "opened": 19000, "steps": steps}


def _results(scenarios: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"settings": {"broadcast_windows": [1], "rounds": 3}, "scenarios": scenarios}


def test_broadcast_ratio_is_the_median_of_the_ratios_within_each_round() -> None:
    # Round by round: 0.8, 1.2, 1.0 at 100 connections; the medians of the values alone
    # would give 110 / 100 = 1.1, not the median of the paired ratios.
    runs = [
        _broadcast_run("herald", 0, {100: 80.0, 200: 50.0}),
        _broadcast_run("floor", 0, {100: 100.0, 200: 50.0}),
        _broadcast_run("herald", 1, {100: 120.0, 200: 60.0}),
        _broadcast_run("floor", 1, {100: 100.0, 200: 50.0}),
        _broadcast_run("herald", 2, {100: 110.0}),
        _broadcast_run("floor", 2, {100: 110.0, 200: 40.0}),
    ]
    out = ratios(_results({"broadcast": runs}))
    rows = out["broadcast.window1.deliveries_per_server_cpu_s.herald/floor"]
    at100, at200 = rows
    assert at100["connections"] == 100
    assert (at100["ratio"], at100["ratio_min"], at100["ratio_max"]) == (1.0, 0.8, 1.2)
    assert at100["rounds"] == 3
    assert at100["per_round"] == [0.8, 1.2, 1.0]
    assert (at100["herald"], at100["floor"]) == (110.0, 100.0)
    # Round 2 has no herald point at 200: two rounds pair up.
    assert at200["rounds"] == 2
    assert at200["per_round"] == [1.0, 1.2]
    assert at200["ratio"] == 1.1


def test_rounds_pair_within_a_round_only() -> None:
    runs = [
        _broadcast_run("herald", 0, {100: 100.0}),
        _broadcast_run("floor", 1, {100: 50.0}),
    ]
    assert ratios(_results({"broadcast": runs})) == {}


def test_results_without_rounds_still_give_their_ratios() -> None:
    old = [
        {k: v for k, v in _broadcast_run(t, 0, {100: v}).items() if k != "round"}
        for t, v in (("herald", 90.0), ("floor", 100.0))
    ]
    (row,) = ratios(_results({"broadcast": old}))[
        "broadcast.window1.deliveries_per_server_cpu_s.herald/floor"
    ]
    assert (row["ratio"], row["rounds"]) == (0.9, 1)


def test_any_target_is_a_peer_and_sorts_after_the_known_ones() -> None:
    runs = [
        _broadcast_run("socketio-node", 0, {100: 50.0}),
        _broadcast_run("herald", 0, {100: 100.0}),
        _broadcast_run("floor", 0, {100: 100.0}),
    ]
    results = _results({"broadcast": runs})
    assert peers(results) == ["floor", "socketio-node"]
    assert [r["target"] for r in sorted_runs(results, "broadcast")] == [
        "floor", "herald", "socketio-node",
    ]  # fmt: skip
    (row,) = ratios(results)["broadcast.window1.deliveries_per_server_cpu_s.herald/socketio-node"]
    assert row["ratio"] == 2.0


def test_qa_ratios_and_herald_own_share_of_the_gap() -> None:
    runs = [
        _qa_run("herald", 0, [_qa_step(4.0, 40.0), _qa_step(5.0, 60.0, 2.0)]),
        _qa_run("floor", 0, [_qa_step(2.0, 20.0), _qa_step(3.0, 30.0, 2.0)]),
        _qa_run("herald", 1, [_qa_step(3.0, 30.0)]),
        _qa_run("floor", 1, [_qa_step(3.0, 30.0)]),
        _qa_run("herald", 2, [_qa_step(6.0, 25.0)]),
        _qa_run("floor", 2, [_qa_step(2.0, 20.0)]),
    ]
    out = qa_ratios(_results({"qa_mix": runs}), "floor")
    (p99,) = out["qa_mix.x1.0.p99_ms.herald/floor"]
    assert p99["per_round"] == [2.0, 1.0, 1.25]
    assert (p99["ratio"], p99["ratio_min"], p99["ratio_max"]) == (1.25, 1.0, 2.0)
    assert (p99["herald"], p99["floor"], p99["connections"], p99["tabs"]) == (30, 20, 19000, 19000)
    # (h - f) / h per round: 0.5, 0.0, 0.2
    assert (p99["herald_own_share"], p99["herald_own_share_min"]) == (0.2, 0.0)
    assert p99["herald_own_share_max"] == 0.5
    (p50,) = out["qa_mix.x1.0.p50_ms.herald/floor"]
    assert p50["per_round"] == [2.0, 1.0, 3.0]
    assert "herald_own_share" not in p50
    (x2,) = out["qa_mix.x2.0.p99_ms.herald/floor"]
    assert x2["rounds"] == 1 and x2["ratio"] == 2.0
    assert "qa_mix.x1.0.p99_ms.herald/floor" in ratios(_results({"qa_mix": runs}))


def test_qa_bars_hold_herald_to_the_floor_and_50_ms() -> None:
    def qa_bar(herald_p99: float, floor_p99: float) -> dict[str, Any]:
        runs = [_qa_run("herald", r, [_qa_step(1.0, herald_p99)]) for r in range(3)] + [
            _qa_run("floor", r, [_qa_step(1.0, floor_p99)]) for r in range(3)
        ]
        (bar,) = [b for b in bars(_results({"qa_mix": runs})) if "floor's p99" in b["bar"]]
        return bar

    assert qa_bar(24.0, 20.0)["met"]
    assert not qa_bar(26.0, 20.0)["met"]  # 1.3 x the floor
    assert not qa_bar(60.0, 55.0)["met"]  # within 1.25 x but above 50 ms at 19k
    assert qa_bar(24.0, 20.0)["value"] == 1.2


def test_report_prints_rounds_ratios_and_the_qa_comparison() -> None:
    runs_b = [
        _broadcast_run(t, r, {100: v * (1 + r / 10)})
        for r in range(3)
        for t, v in (("herald", 90.0), ("floor", 100.0))
    ]
    for run_ in runs_b:
        for p in run_["points"]:
            p.update({
                "publications": 1, "server_writes_per_delivery": 1.0,
                "loadgen_cpu_us_per_delivery": 1.0, "latency": {"p50_ms": 1.0, "p99_ms": 2.0},
                "verify": {"clients_exact": 100, "missing": 0},
            })  # fmt: skip
    runs_q = [
        _qa_run(t, r, [_qa_step(1.0, p99)])
        for r in range(3)
        for t, p99 in (("herald", 30.0), ("floor", 20.0))
    ]
    for run_ in runs_q:
        run_.update({
            "workers": 2, "subscriptions": 1, "questions": 1, "rate_boost": 1.0,
            "nominal_rates_per_100k_tabs": {"question_per_s": 1, "user_per_s": 1,
                                            "questions_new_per_s": 1},
            "skipped": [] if run_["target"] == "herald" else ["no tokens"],
        })  # fmt: skip
        for s in run_["steps"]:
            s.update({"server_cpu_percent": 1.0, "loadgen_cpu_s": 1.0})
            s["latency"]["p999_ms"] = 1.0
    results = _results({"broadcast": runs_b, "qa_mix": runs_q})
    results["settings"].update({"burst_size": 1, "qa_probe_every": 10})
    results["ratios"] = ratios(results)
    text = "\n".join(_ratios(results) + _qa(results) + _qa_against_peers(results))
    assert "3 interleaved rounds" in text
    assert "| 0.90 | 0.90 | 0.90 | 3 |" in text
    assert "Herald's own share of the gap" in text
    assert "| floor | 19,000 | x1.0 |" in text
    assert "1.50 (1.50 to 1.50)" in text and "0.33 (0.33 to 0.33)" in text
    assert "**floor**, round 3" in text and "Skipped for this target: no tokens." in text


def test_plots_draw_the_first_round_and_herald_latency() -> None:
    both = [(t, r) for r in range(3) for t in ("herald", "floor")]
    results = _results(
        {
            "broadcast": [_broadcast_run(t, r, {100: 1.0}) for t, r in both],
            "qa_mix": [_qa_run(t, r, []) for t, r in both],
        }
    )
    kept = for_plots(results)["scenarios"]
    assert [(r["target"], r["round"]) for r in kept["broadcast"]] == [("herald", 0), ("floor", 0)]
    assert [(r["target"], r["round"]) for r in kept["qa_mix"]] == [("herald", 0)]
    assert len(results["scenarios"]["broadcast"]) == 6  # the results themselves are kept


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_failing_scenario_keeps_the_others_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import asyncio
    import dataclasses

    from bench import run as bench_run

    async def fine(bench: Any) -> list[dict[str, Any]]:
        return [{"target": "floor", "workers": 1, "points": []}]

    async def boom(bench: Any) -> list[dict[str, Any]]:
        raise RuntimeError("server not ready in time")

    monkeypatch.setitem(bench_run.SCENARIOS, "fine_a", fine)
    monkeypatch.setitem(bench_run.SCENARIOS, "boom", boom)
    monkeypatch.setitem(bench_run.SCENARIOS, "fine_b", fine)
    scale = dataclasses.replace(SCALES["smoke"], load_processes=1)
    results = asyncio.run(
        bench_run.run(scale, ["fine_a", "boom", "fine_b"], ["floor"], log_dir=tmp_path)
    )
    assert results["scenarios"]["fine_a"] == results["scenarios"]["fine_b"] != []
    assert results["scenarios"]["boom"] == []
    assert results["failed_scenarios"] == {"boom": "RuntimeError: server not ready in time"}
    assert any("boom failed" in note for note in results["notes"])
