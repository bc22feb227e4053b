"""bench/hosts.py keeps working: a tiny run of the three topologies (one host directly, one
and two hosts behind HAProxy) on one Redis.

Structure and counts only, never timings: the figures belong to bench/results/HOSTS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.hosts import TOPOLOGIES, Plan, measure
from tests.support.haproxy import require_haproxy

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]

PHASE_KEYS = {
    "published", "expected_deliveries", "deliveries", "all_delivered", "seconds",
    "deliveries_per_s", "latency", "fleet_cpu_s", "fleet_cpu_s_per_host",
    "fleet_cpu_us_per_delivery", "haproxy_cpu_s", "haproxy_cpu_us_per_delivery",
    "redis_cpu_s", "loadgen_cpu_s", "machine_busy_cpu_s", "verify",
}  # fmt: skip


async def test_every_topology_delivers_every_publication_to_every_client(
    tmp_path: Path,
) -> None:
    require_haproxy()
    plan = Plan(
        clients=50, workers=1, channels=2, rate_per_s=5.0, rate_seconds=2.0,
        max_publications=20, max_seconds=2.0, probe_every=5,
    )  # fmt: skip
    result = await measure(plan, tmp_path)

    assert result["benchmark"] == "hosts"
    assert set(result["topologies"]) == set(TOPOLOGIES)
    for name, topology in result["topologies"].items():
        hosts = 2 if name == "haproxy_2" else 1
        assert topology["hosts"] == hosts
        assert topology["through_haproxy"] == (name != "direct")
        assert topology["clients_opened"] == 50, topology
        if name != "direct":
            assert sum(topology["clients_per_host"].values()) == 50
            assert len(topology["clients_per_host"]) == hosts
        assert set(topology["phases"]) == {"fixed_rate", "max"}
        for phase in topology["phases"].values():
            assert set(phase) >= PHASE_KEYS
            assert phase["published"] > 0
            # 50 clients over 2 channels: each publication reaches 25 of them.
            assert phase["expected_deliveries"] == 25 * phase["published"]
            assert phase["deliveries"] == phase["expected_deliveries"], phase
            assert phase["all_delivered"]
            assert phase["verify"]["clients_exact"] == 50
            assert phase["verify"]["missing"] == 0
            assert phase["gaps"] == 0
            assert phase["lost_unexpectedly"] == 0
            assert phase["latency"]["samples"] > 0
            assert len(phase["fleet_cpu_s_per_host"]) == hosts
            assert phase["fleet_cpu_s"] >= 0 and phase["haproxy_cpu_s"] >= 0
            if name == "direct":
                assert phase["haproxy_cpu_s"] == 0
    for label in ("two_hosts_over_one", "haproxy_over_direct"):
        assert set(result["ratios"][label]) == {"fixed_rate", "max"}
        assert result["ratios"][label]["max"]["deliveries_per_s"] is not None
