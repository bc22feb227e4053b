"""The bus's shard connections and recoveries in a worker's /metrics (socketsrv/buses.py).

A real recovery each time: the worker's pub/sub connection is killed with ``CLIENT KILL TYPE
pubsub`` (plain Redis, and every node of a Redis Cluster); the test waits until the worker's
registry counts the recovery, then scrapes /metrics as Prometheus would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.client import HeraldTestClient
from tests.support.raw_ws import http_get
from tests.support.redis_cluster import RedisClusterTestbed
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import Worker, metric, running_worker, ws_url

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

CHANNEL = "question:1"


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterTestbed]:
    cluster = RedisClusterTestbed.launch(tmp_path_factory.mktemp("cluster"), primaries=3)
    try:
        yield cluster
    finally:
        cluster.close()


def sample(text: bytes, name: str, labels: str = "") -> float | None:
    """The value of the series *name* with exactly *labels* (as written) in *text*, if any."""
    series = name + (f"{{{labels}}}" if labels else "")
    found = re.search(rb"^" + re.escape(series.encode()) + rb" (\S+)$", text, re.M)
    return None if found is None else float(found.group(1))


async def subscribed_client(worker: Worker) -> HeraldTestClient:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    reply = await client.subscribe(CHANNEL)
    assert reply["type"] == "reply", reply
    return client


async def recovered_scrape(worker: Worker) -> bytes:
    """/metrics once the worker's bus has recovered (counted) and is live again."""
    await eventually(
        lambda: (
            metric(worker, "herald_bus_recoveries_total", reason="connection_lost") == 1
            and worker.bus.live
        ),
        timeout_s=20,
    )
    answer = await http_get(worker.port, "/metrics")
    assert answer.status == 200
    return answer.body


def assert_one_recovery(text: bytes) -> None:
    assert sample(text, "herald_bus_shard_connections") == 1.0
    assert sample(text, "herald_bus_recoveries_total", 'reason="connection_lost"') == 1.0
    for other in ("ping_timeout", "slot_moved", "sunsubscribe", "reader_error"):
        assert sample(text, "herald_bus_recoveries_total", f'reason="{other}"') == 0.0
    resubscribed = sample(text, "herald_bus_channels_resubscribed_total")
    assert resubscribed is not None
    assert resubscribed >= 1.0  # at least the client's channel
    assert sample(text, "herald_bus_slot_moves_total") == 0.0
    assert sample(text, "herald_bus_recovery_seconds_count") == 1.0
    assert sample(text, "herald_bus_live") == 1.0


async def test_a_killed_redis_pubsub_connection_shows_as_a_recovery_in_metrics(
    redis_server: RedisServer,
) -> None:
    async with running_worker(redis_url=redis_server.url) as worker:
        client = await subscribed_client(worker)
        try:
            before = (await http_get(worker.port, "/metrics")).body
            assert sample(before, "herald_bus_shard_connections") == 1.0
            assert sample(before, "herald_bus_recoveries_total", 'reason="connection_lost"') == 0
            redis_server.client().client_kill_filter(_type="pubsub")
            assert_one_recovery(await recovered_scrape(worker))
        finally:
            await client.close()


async def test_a_killed_cluster_shard_connection_shows_as_a_recovery_in_metrics(
    redis_cluster: RedisClusterTestbed,
) -> None:
    redis_cluster.flushall()
    async with running_worker(redis_url=redis_cluster.url) as worker:
        before = (await http_get(worker.port, "/metrics")).body
        assert sample(before, "herald_bus_shard_connections") == 0.0  # no channel yet
        client = await subscribed_client(worker)
        try:
            await eventually(lambda: metric(worker, "herald_bus_shard_connections") == 1)
            for node in redis_cluster.nodes:
                node.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert_one_recovery(await recovered_scrape(worker))
        finally:
            await client.close()
