"""bench/conflation.py keeps working: a tiny run (20 clients, 2 of them reading 2 KiB/s, 4 s of
200 votes a second) on a real redis-server and a real fleet worker run from this checkout.

Structure and counts only, never timings: the figures belong to bench/results/CONFLATION.md.
"""

from __future__ import annotations

import pytest

from bench.conflation import SCALES, run

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def test_throttled_clients_get_conflated_scores_in_order_without_a_gap() -> None:
    result = run(SCALES["smoke"], "on-small")

    assert result["votes"] == 800
    assert result["gaps"] == 0, result
    assert result["older_after_newer"] == 0, result
    assert result["closes"]["throttled"] == {}, result
    assert result["worker_conflated"] > 0
    assert result["conflated_skips_seen"] > 0
    assert result["others_latency_s"]["samples"] > 0
    assert set(result["final_score_lag_s"]) == {"p50", "max"}
    assert set(result["throttled_unread_at_last_vote_bytes"]) == {"p50", "max"}
