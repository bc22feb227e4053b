"""bench/soak.py keeps working: a tiny soak (300 clients, ~20 s) with both faults.

Counts only, never timings nor the ±5% verdict (a few hundred connections on a shared machine
say nothing about it): the figures belong to bench/results/SOAK.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]


def test_a_tiny_soak_survives_both_faults_and_no_client_silently_loses_a_publication(
    tmp_path: Path,
) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--tabs", "300", "--workers", "2",
         "--load-processes", "2", "--warmup", "4", "--seconds", "12", "--churn", "10",
         "--rate-multiplier", "100", "--slow-share", "0.05", "--slow-pause", "1", "3",
         "--sample-every", "1", "--settle", "30", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["opened"]["opened"] == 300
    assert result["published"] > 0
    assert [e["what"] for e in result["events"] if e["what"].endswith(("restart", "kill"))] == [
        "redis_restart",
        "worker_kill",
    ]
    victim = next(e["pid"] for e in result["events"] if e["what"] == "worker_kill")
    last = result["samples"][-1]
    assert last["workers"] == 2 and victim not in last["worker_pids"]
    accounting = result["accounting"]
    assert accounting["silent_loss"] == 0
    assert accounting["duplicates"] == 0
    assert accounting["complete"] + accounting["failed_explicit"] == 471  # the population's
    assert result["churn"]["completed"] > 0
    assert result["slow_readers"]["pauses"] > 0
    assert result["reconnects"]["reconnected"] > 0
    for resource in result["verdict"]:
        if resource != "nothing_lost":
            assert result["verdict"][resource]["after_warmup"] is not None, resource
            assert result["verdict"][resource]["at_end"] is not None, resource
    assert "[PASS] every client whole or told" in proc.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--slow-share", "2"], "--slow-share"),
        (["--slow-pause", "5", "1"], "--slow-pause"),
        (["--seconds", "0"], "--seconds"),
        (["--tabs", "0"], "--tabs"),
        (["--report"], "--report needs --out"),
    ],
)
def test_a_bad_argument_is_refused_with_a_message(args: list[str], named: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert named in proc.stderr
