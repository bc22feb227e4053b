"""bench/dropped.py keeps working: seconds of traffic with a fifth of pub/sub messages dropped.

Counts only, never timings: the figures belong to bench/results/DROPPED.md. With position
checks on, every client ends whole (or explicitly failed); the control run without them only
has to run (which of its tails are lost is chance).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]


def test_with_position_checks_no_client_silently_misses_a_dropped_publication(
    tmp_path: Path,
) -> None:
    out = tmp_path / "dropped.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.dropped", "--seconds", "3", "--clients", "20",
         "--channels", "20", "--subscriptions", "3", "--rate", "50", "--drop", "0.2",
         "--check-interval", "0.5", "--settle", "10", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    on, off = runs["checks_on"], runs["checks_off"]
    assert on["publications"] > 0 and on["publish_errors"] == 0
    assert on["messages_dropped"] > 0
    assert on["accounting"]["silent_loss"] == 0
    assert on["accounting"]["complete"] + on["accounting"]["failed_explicit"] == 60
    assert (on["accounting"]["duplicates"], on["accounting"]["out_of_order"]) == (0, 0)
    assert on["fleet"]['herald_position_checks_total{result="ok"}'] > 0
    assert off["client_channels"] == 60
    assert off["fleet"]["herald_position_channels_checked_total"] == 0


def test_a_bad_argument_is_refused_with_a_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.dropped", "--modes", "sometimes"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--modes" in proc.stderr
