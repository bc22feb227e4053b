"""bench/slow_clients.py keeps working: a tiny run (20 clients, 4 of which stop reading for
3 s) on a real redis-server and a real fleet worker run from this checkout.

Structure and counts only, never timings: the figures belong to bench/results/SLOW.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.slow_clients import SCALES, run

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]


def test_every_client_ends_with_every_publication_once_in_order() -> None:
    plan = SCALES["smoke"]
    result = run(plan, Path.cwd(), "smoke")

    assert result["published"] == result["last_offset"] > 0
    assert result["duplicates"] == 0
    assert result["gaps"] == 0
    assert result["clients_not_at_last_offset"] == 0, result
    assert result["catch_up_s"]["not_caught_up"] == 0, result
    assert result["fast_latency_s"]["samples"] > 0
    assert set(result["worker_rss_kib"]) == {
        "idle",
        "connected",
        "publishing",
        "peak",
        "catch_up_plus_10s",
        "catch_up_plus_60s",
        "after_settle",
    }
    assert result["worker_rss_series"]
