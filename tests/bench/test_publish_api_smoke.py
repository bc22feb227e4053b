"""The publish API benchmark keeps working: ``python -m bench.publish_api --smoke`` end to end
(a Redis, ``python -m publish_api``, the library and both HTTP modes). Counts only, never
timings: the figures belong to bench/results/PUBLISH_API.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(180), pytest.mark.redis]


def test_the_smoke_run_measures_every_mode_and_counts_every_publication(tmp_path: Path) -> None:
    out, page = tmp_path / "publish-api.json", tmp_path / "PUBLISH_API.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.publish_api", "--smoke",
         "--output", str(out), "--markdown", str(page)],
        cwd=ROOT, capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["modes"]) == {"library", "http", "http-batch"}
    for mode in report["modes"].values():
        assert mode["publications"] == 600  # each round checked against Redis's offsets
        assert len(mode["per_s_rounds"]) == 2
        assert mode["per_s_median_round"] > 0
    assert len(report["loadavg_before"]) == 3
    assert "| http-batch |" in page.read_text()
