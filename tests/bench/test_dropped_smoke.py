"""bench/dropped.py keeps working: seconds of traffic with a fifth of pub/sub messages dropped.

Counts only, never timings: the figures belong to bench/results/DROPPED.md. With position
checks on, every client ends whole (or explicitly failed); the control run without them only
has to run (which of its tails are lost is chance). The prober runs beside both, and three
consecutive probes are dropped on purpose: at one probe every half second, the first of them
cannot reach anyone before the probe after them is published 1.5 s later, so without position
checks the prober must count at least one receipt over 1 s late, or a miss.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]


def start_bench(mode: str, settle_s: float, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.dropped", "--modes", mode, "--seconds", "3",
         "--clients", "20", "--channels", "20", "--subscriptions", "3", "--rate", "50",
         "--drop", "0.2", "--check-interval", "0.5", "--settle", str(settle_s),
         "--probe-interval", "0.5", "--probe-deadline", "3", "--probe-connections", "4",
         "--probe-drop-run", "3", "--sample-every", "1", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish_bench(proc: subprocess.Popen[str], mode: str, out: Path) -> dict[str, Any]:
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    run: dict[str, Any] = json.loads(out.read_text())["runs"][mode]
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Checks on may take up to 15 s to be whole (it stops waiting once it is); the control
    is not waited for: a tail it lost stays lost. The two runs (each its own Redis, fleet,
    proxy and prober) go side by side."""
    tmp = tmp_path_factory.mktemp("dropped")
    plan = {"checks_on": (15.0, tmp / "on.json"), "checks_off": (0.1, tmp / "off.json")}
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for mode, (settle_s, out) in plan.items():
            procs[mode] = start_bench(mode, settle_s, out)
        return {mode: finish_bench(proc, mode, plan[mode][1]) for mode, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_with_position_checks_no_client_silently_misses_a_dropped_publication(
    runs: dict[str, Any],
) -> None:
    on, off = runs["checks_on"], runs["checks_off"]
    assert on["publications"] > 0 and on["publish_errors"] == 0
    assert on["messages_dropped"] > 0
    assert on["accounting"]["silent_loss"] == 0
    assert on["accounting"]["complete"] + on["accounting"]["failed_explicit"] == 60
    assert (on["accounting"]["duplicates"], on["accounting"]["out_of_order"]) == (0, 0)
    assert on["fleet"]['herald_position_checks_total{result="ok"}'] > 0
    assert off["client_channels"] == 60
    assert off["fleet"]["herald_position_channels_checked_total"] == 0


def test_the_prober_probes_through_the_dropping_proxy_in_both_runs(
    runs: dict[str, Any],
) -> None:
    for run in runs.values():
        probe = run["probe"]
        assert probe["connections_live_before_drops"] is True
        assert probe["workers_hearing_probes"] >= 1
        assert probe["final"]["sent"] > 0 and probe["final"]["receipts"] > 0
        dropped = {seq for seq, _ in probe["dropped_probes_seq_at_s"]}
        assert set(probe["chosen_drop_run"]) <= dropped
        assert len(run["series"]) >= 3
        assert run["series"][-1]["fleet"]["herald_publications_received_total"] > 0


def test_without_position_checks_the_prober_sees_the_chosen_probes_late_or_missed(
    runs: dict[str, Any],
) -> None:
    final = runs["checks_off"]["probe"]["final"]
    assert final["over_1_s"] + final["missed_deadline"] >= 1


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("--modes", "sometimes"),
        ("--probe-interval", "0"),
        ("--probe-deadline", "-1"),
        ("--sample-every", "0"),
        ("--probe-connections", "0"),
        ("--probe-connections", "101"),
        ("--probe-drop-run", "-1"),
    ],
)
def test_a_bad_argument_is_refused_with_a_message(argument: str, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.dropped", argument, value],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert argument in proc.stderr
