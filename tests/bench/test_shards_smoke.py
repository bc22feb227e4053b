"""bench/shards.py keeps working: a tiny run against one Redis and a 3-primary cluster.

Counts only, never timings: the figures belong to bench/results/SHARDS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def test_shards_benchmark_runs_and_reports_sane_counts(tmp_path: Path) -> None:
    out = tmp_path / "shards.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.shards", "--processes", "1", "--tasks", "2",
         "--publications", "200", "--max-seconds", "60", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    one, three = result["topologies"]["one_redis"], result["topologies"]["cluster_3"]
    for topology, shards in ((one, 1), (three, 3)):
        assert topology["published"] == 200
        assert topology["errors"] == 0
        assert len(topology["server_cpu_s"]) == shards
        assert all(cpu >= 0 for cpu in topology["server_cpu_s"])
        assert topology["publications_per_s"] > 0
    assert set(result["three_over_one"]) == {"publications_per_s", "publications_per_server_cpu_s"}
