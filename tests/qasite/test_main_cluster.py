"""The Q&A core on a ``redis+cluster://`` URL (qasite/main.py): ready, and its relay publishes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.qasite.support import qa_settings, running_qa
from tests.support.redis_cluster import RedisClusterTestbed

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterTestbed]:
    cluster = RedisClusterTestbed.launch(tmp_path_factory.mktemp("cluster"), primaries=3)
    try:
        yield cluster
    finally:
        cluster.close()


async def test_on_a_cluster_url_the_core_is_ready_and_its_relay_drains_the_outbox(
    tmp_path: Path, redis_cluster: RedisClusterTestbed
) -> None:
    settings = qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}")
    async with running_qa(settings.replace(redis_url=redis_cluster.url), record=False) as qa:
        r = await qa.client.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        user = await qa.signup()
        await qa.ask(user, tags=["a", "b"])
        await qa.settle()  # the relay published every event through the cluster
        assert await qa.pending_events() == 0
