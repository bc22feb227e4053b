"""Issue 10's "done when": failovers under load, end to end, with the counts printed.

Two fleet hosts (2 workers each) behind HAProxy on a Sentinel-managed Redis, then on a
3-primary + 3-replica Redis Cluster. A swarm of clients (tests/support/swarm.py) subscribes
through HAProxy to a Zipf mix of channels; one task per channel publishes ``{"seq": n}``
through publisher.Publisher, retrying each n with the same event id until it is acknowledged.
During the run a Redis primary is SIGKILLed (its replica promoted), on the cluster the busiest
channel's slot is migrated to another primary, and one fleet host is rolled (drained and
restarted). Then the publishers stop and publish one final seq per channel.

The invariant, per client and channel: every publication exactly once and in order between
explicit resets (a subscribe reply saying ``failed``): zero silent gaps, duplicates,
reorders, lost tails and protocol violations. The table is printed (``pytest -s``) and written
to ``failover-report.json`` in the test's tmp dir.

Bounded by default (300 clients, 25 s of publishing); ``HERALD_SCALE=full`` runs 2,000 clients
for 45 s, as the issue says.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from herald_contract.keys import KeyLayout
from launch.hosts import Topology, roll_host
from tests.support.haproxy import running_topology, short_run_dir
from tests.support.redis_sentinel import SentinelGroup
from tests.support.swarm import (
    FaultClock,
    PublisherPool,
    Swarm,
    build_report,
    format_report,
    subscriber_counts,
    violations,
    zipf_plan,
    zipf_rates,
)

FULL = os.environ.get("HERALD_SCALE") == "full"


@dataclass(frozen=True)
class Scale:
    clients: int
    publish_s: float
    base_rate: float
    """Publications per second on the coldest channel (the busiest get 3x)."""
    settle_s: float
    """Publishing before the first fault."""


SCALE = Scale(2000, 45.0, 1.0, 8.0) if FULL else Scale(300, 25.0, 2.0, 4.0)
QUESTIONS = 40
HOST_ENV = {
    "HERALD_RECONNECT_SPREAD_S": "0.5",
    "HERALD_DRAIN_BATCH_INTERVAL_S": "0.01",
    "HERALD_UNSUBSCRIBE_GRACE_S": "1",
}
FINAL_WAIT_S = 120.0
TIMEOUT_S = 900 if FULL else 300

pytestmark = [pytest.mark.scale, pytest.mark.redis, pytest.mark.timeout(TIMEOUT_S)]


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = short_run_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def channel_mix() -> tuple[list[list[str]], dict[str, float]]:
    plan = zipf_plan(SCALE.clients, questions=QUESTIONS)
    channels = [f"question:{i}" for i in range(1, QUESTIONS + 1)] + ["questions:new"]
    return plan, zipf_rates(channels, SCALE.base_rate)


def busiest(plan: list[list[str]]) -> list[str]:
    """Channels by subscriber count, most first."""
    return [channel for channel, _ in subscriber_counts(plan).most_common()]


def slot_of(channel: str) -> int:
    return key_slot(KeyLayout().history(channel).encode())


async def failover_run(
    *,
    title: str,
    redis_url: str,
    topology: Topology,
    plan: list[list[str]],
    rates: dict[str, float],
    faults: list[tuple[str, Callable[[], Any]]],
    out: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Warm up, start the swarm and the publishers, run *faults* in turn (each timed to all
    clients recovered), stop, publish the finals, wait for them; the report."""
    pool = PublisherPool(redis_url, rates, publishers=2, retry_deadline_s=60.0)
    swarm = Swarm(topology.url, plan)
    try:
        await pool.warm_up()  # every channel has an epoch before anyone subscribes
        began = time.monotonic()
        await swarm.start()
        started_s = time.monotonic() - began
        pool.start()
        clock = FaultClock(swarm, pool, timeout_s=120.0)
        publishing_began = time.monotonic()
        await asyncio.sleep(SCALE.settle_s)
        for name, operation in faults:
            await clock.run(name, operation)
            pool.check_running()
        rest = publishing_began + SCALE.publish_s - time.monotonic()
        await asyncio.sleep(max(2.0, rest))
        await pool.stop()
        finals = await pool.publish_final()
        final_wait_s = await swarm.wait_final(finals, FINAL_WAIT_S)
        report = build_report(
            swarm,
            pool,
            clock.faults,
            finals,
            final_wait_s=final_wait_s,
            extra={
                "scale": "full" if FULL else "bounded",
                "clients_started_s": round(started_s, 2),
                "publishing_s": round(time.monotonic() - publishing_began, 1),
                **extra,
            },
        )
    finally:
        await swarm.stop()
        await pool.close()
    print("\n" + format_report(title, report))
    await asyncio.to_thread(out.write_text, json.dumps(report, indent=2, default=str))
    return report


def assert_invariant(report: dict[str, Any]) -> None:
    assert not violations(report), (violations(report), report["anomaly_examples"])
    unrecovered = [f["fault"] for f in report["faults"] if f["all_clients_recovered_s"] is None]
    assert not unrecovered, f"clients never recovered after {unrecovered}"
    assert report["final_seqs_reached_s"] is not None
    assert report["clients_stopped_by_close_code"] == 0
    assert report["deliveries_checked"] > report["publications_acked"]


async def test_sentinel_primary_killed_and_host_rolled(tmp_path: Path, run_dir: Path) -> None:
    plan, rates = channel_mix()
    with (
        SentinelGroup.launch(tmp_path / "sentinel") as group,
        running_topology(
            hosts=2, workers=2, redis_url=group.url, run_dir=run_dir, **HOST_ENV
        ) as topology,
    ):
        host = topology.hosts[0]
        report = await failover_run(
            title="Sentinel: primary SIGKILLed, replica promoted; host h1 rolled",
            redis_url=group.url,
            topology=topology,
            plan=plan,
            rates=rates,
            faults=[
                ("redis primary SIGKILL -> promoted", group.kill_primary),
                ("fleet host h1 rolled", lambda: roll_host(host, topology.lb)),
            ],
            out=tmp_path / "failover-report.json",
            extra={
                "redis": "sentinel: primary + replica, 3 sentinels",
                "busiest": busiest(plan)[:3],
            },
        )
    assert_invariant(report)
