"""The Q&A HTTP benchmark keeps working: ``python -m bench.qa_http --smoke`` end to end.

It seeds 2,000 questions into a temporary SQLite file, starts the service with two uvicorn
workers in production mode, and runs every scenario for 300 requests. Counts only, never
timings: the numbers belong to bench/results/QA_HTTP.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("question", "search", "tag_newest")

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("qa-http")
    out = tmp / "qa-http.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.qa_http", "--smoke", "--output", str(out),
         "--log-dir", str(tmp / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=80,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def test_the_smoke_run_seeds_the_questions_it_measures(report: dict[str, Any]) -> None:
    assert report["questions"] == 2000
    assert report["service"]["command"].endswith("--workers 2")
    assert set(report["scenarios"]) == set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_request_of_a_scenario_is_answered_200(report: dict[str, Any], scenario: str) -> None:
    [run] = report["scenarios"][scenario]
    assert run["errors"] == {}
    assert run["requests"] == 300
    assert run["statuses"] == {"200": 300}
    assert run["latency_ms"]["p50"] is not None
    assert run["mean_response_bytes"] > 100, "pages and questions, not empty answers"
