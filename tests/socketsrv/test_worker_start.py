"""socketsrv/worker.py: a worker that comes up before its Redis does.

The worker listens at once and starts its bus in the background; the test starts a real
redis-server only once the worker has failed to reach it a few times.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

from herald_contract.backoff import Backoff
from tests.support.client import HeraldTestClient
from tests.support.raw_ws import http_get
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import publish, running_worker, ws_url

LOGGERS = ("socketsrv.worker", "herald_contract.backoff")


def failed_attempts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The log lines of failed bus starts: the one before listening, then the retries."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name in LOGGERS and r.getMessage().startswith("bus start")
    ]


@pytest.mark.redis
async def test_a_worker_serves_unready_until_its_redis_comes_up_then_is_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path / "redis")  # its port chosen, the server not started yet
    backoff = Backoff(base_s=0.01, cap_s=0.1, rng=random.Random(3))
    for logger in LOGGERS:
        caplog.set_level(logging.INFO, logger=logger)
    try:
        async with running_worker(
            redis_url=redis.url, bus_backoff=backoff, wait_for_bus=False
        ) as worker:
            await eventually(lambda: len(failed_attempts(caplog)) >= 2)
            assert (await http_get(worker.port, "/readyz")).status == 503
            assert (await http_get(worker.port, "/healthz")).status == 200
            client = HeraldTestClient(ws_url(worker))
            await client.open()
            try:
                refused = await client.subscribe("question:1")
                assert (refused["type"], refused["code"]) == ("error", 503)

                await asyncio.to_thread(redis.start)
                await worker.bus_started()
                assert (await http_get(worker.port, "/readyz")).status == 200
                again = await client.subscribe("question:1")  # no wait for the failed channel
                assert again["type"] == "reply", again
                await publish(worker, "question:1", {"score": 1})
                await eventually(lambda: client.data("question:1") == [{"score": 1}])
            finally:
                await client.close()
    finally:
        redis.close()
    lines = failed_attempts(caplog)
    assert lines[0].startswith("bus start failed (bus unavailable: cannot connect to Redis")
    assert "serving unready, retrying in the background" in lines[0]
    assert [line.split(" failed:")[0] for line in lines[1:]] == [
        f"bus start retry attempt {n}" for n in range(1, len(lines))
    ]  # one line per failed attempt
    assert all(r.exc_info is None for r in caplog.records if r.name in LOGGERS)  # no traceback
