"""bench.handshake_cost measures every variant side by side and reports medians and ratios
(a small run against a real worker, floor server and redis-server; counts, never timings)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.handshake_cost import main, summarise


def test_the_ratios_are_taken_round_by_round_with_median_min_and_max() -> None:
    def figures(cpu_ms: float) -> dict[str, float]:
        return {
            "cpu_ms_per_connection": cpu_ms,
            "ready_per_s": 1.0,
            "ready_per_worker_cpu_s": 1 / cpu_ms,
        }

    rounds = [
        {"herald-fast": figures(a), "floor": figures(b)}
        for a, b in ((2.0, 1.0), (3.0, 1.0), (8.0, 2.0))
    ]
    summary = summarise(rounds)
    ratio = summary["ratios"]["cpu_per_connection herald-fast/floor"]
    assert ratio == {"median": 3.0, "min": 2.0, "max": 4.0}
    assert summary["herald-fast"]["cpu_ms_per_connection"]["median"] == 3.0


def test_a_small_run_reconnects_every_connection_of_every_variant(tmp_path: Path) -> None:
    out = tmp_path / "handshake.json"
    args = ["--connections", "60", "--rounds", "1", "--missed", "2", "--output", str(out)]
    assert main(args) == 0
    results = json.loads(out.read_text())
    (only,) = results["rounds"]
    assert set(only) == {"herald-fast", "herald-classic", "floor"}
    for variant in only.values():
        assert variant["opened"] == variant["reconnected"] == 60
    assert "cpu_per_connection herald-fast/herald-classic" in results["summary"]["ratios"]
