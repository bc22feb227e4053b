"""bench/abuse.py keeps working: a tiny run (50 clients, 2 s per run) without and with the
flood from 127.0.0.50, on a real redis-server and a real fleet host.

Structure and counts only, never timings: the figures belong to bench/results/ABUSE.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.abuse import KINDS, Plan, measure

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]

RUN_KEYS = {
    "published", "expected_deliveries", "deliveries", "all_delivered", "latency",
    "worker_cpu_s", "worker_rss_kib_before", "worker_rss_kib_after", "redis_cpu_s",
    "loadgen_cpu_s", "machine_busy_cpu_s", "verify", "server_metrics",
}  # fmt: skip


async def test_the_well_behaved_clients_get_everything_while_the_abuser_is_refused(
    tmp_path: Path,
) -> None:
    plan = Plan(
        clients=50, channels=2, rate_per_s=5.0, seconds=2.0, probe_every=5,
        abusers_per_kind=1, replay_publications=100, max_abusive_connections=2000,
        runs=("calm", "flood"),
    )  # fmt: skip
    result = await measure(plan, tmp_path)

    assert result["benchmark"] == "abuse"
    assert result["clients_opened"] == 50, result
    assert set(result["runs"]) == {"calm", "flood"}
    for run in result["runs"].values():
        assert set(run) >= RUN_KEYS
        assert run["published"] == 10
        # 50 clients over 2 channels: each publication reaches 25 of them, flood or not.
        assert run["deliveries"] == run["expected_deliveries"] == 250, run
        assert run["all_delivered"]
        assert run["verify"]["clients_exact"] == 50
        assert run["gaps"] == 0
        assert run["lost_unexpectedly"] == 0
        assert run["latency"]["samples"] > 0
        assert len(run["worker_rss_kib_after"]) == 1
    assert "abuser" not in result["runs"]["calm"]
    flood = result["runs"]["flood"]
    abuser = flood["abuser"]
    for kind in KINDS:
        assert abuser[f"connections_{kind}"] >= 1, abuser
    assert abuser["connections"] <= plan.max_abusive_connections
    # The floods were refused and closed 4006, and the server counted it.
    assert abuser["ping_close_4006"] >= 1 and abuser["churn_close_4006"] >= 1, abuser
    assert abuser["error_429"] >= 1
    assert abuser["replay_fresh_recovery_recovered"] >= 1
    metrics = flood["server_metrics"]
    assert metrics['herald_disconnects_total{code="4006"}'] >= 2, metrics
    assert metrics['herald_frames_refused_total{kind="ping"}'] >= 1
    assert metrics["herald_replay_bytes_total"] > 0
    assert 'herald_disconnects_total{code="4006"}' not in result["runs"]["calm"]["server_metrics"]
    assert set(result["flood_over_calm"]) == {"latency_p50", "latency_p99", "worker_cpu_s"}
    assert set(result["over_calm"]) == {"flood"}
