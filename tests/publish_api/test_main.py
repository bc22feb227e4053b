"""``python -m publish_api`` as a process over a real Redis: a publication posted over HTTP
reaches a websocket subscriber of the fleet (``python -m socketsrv``), with the offset the
HTTP reply gave; and the one-line refusals at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.publish_api.support import KEY
from tests.support.client import HeraldTestClient
from tests.support.fleet import Fleet
from tests.support.processes import stop_group
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def run_main(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "publish_api"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_key_it_refuses_to_start_in_one_line() -> None:
    ended = run_main({"HERALD_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert ended.returncode == 2
    assert ended.stderr == (
        "publish_api: HERALD_API_KEYS: no API key is set: name:key[,name:key...]\n"
    )


def test_a_short_key_or_no_redis_url_is_refused_naming_the_variable() -> None:
    short = run_main({"HERALD_REDIS_URL": "redis://127.0.0.1:1/0", "HERALD_API_KEYS": "a:short"})
    no_redis = run_main({"HERALD_API_KEYS": f"a:{KEY}"})
    assert short.returncode == 2 and short.stderr.startswith("publish_api: HERALD_API_KEYS: ")
    assert "at least 16" in short.stderr and "short" not in short.stderr.split("'a'")[-1]
    assert no_redis.returncode == 2
    assert no_redis.stderr.startswith("publish_api: HERALD_REDIS_URL: is not set")


@pytest.fixture
def api_process(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    env = {
        **os.environ,
        "HERALD_REDIS_URL": redis_server.url,
        "HERALD_API_KEYS": f"notifier:{KEY}",
        "HERALD_API_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "publish_api"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "api.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the publish API did not start"
            time.sleep(0.05)
        yield url
    finally:
        stop_group(process)
        log.close()


async def test_a_publication_over_http_reaches_a_websocket_subscriber_of_the_fleet(
    redis_server: RedisServer, api_process: str, tmp_path: Path
) -> None:
    fleet = Fleet(redis_url=redis_server.url, workers=1, log=tmp_path / "fleet.log")
    try:
        fleet.wait_ready()
        subscriber = HeraldTestClient(fleet.url)
        await subscriber.open()
        reply = await subscriber.subscribe("question:5")
        assert reply["type"] == "reply", reply
        async with httpx.AsyncClient(base_url=api_process, headers={"X-API-Key": KEY}) as api:
            published = await api.post(
                "/api/publish",
                json={"channel": "question:5", "data": {"type": "score", "score": 9}},
            )
            broadcast = await api.post(
                "/api/broadcast",
                json={"channels": ["question:5", "tag:redis"], "data": "both", "event_id": "b1"},
            )
            metrics = (await api.get("/metrics")).text
        assert published.status_code == 200, published.text
        assert broadcast.status_code == 200, broadcast.text
        await eventually(lambda: len(subscriber.offsets("question:5")) == 2, timeout_s=20)
        assert subscriber.offsets("question:5") == [
            published.json()["offset"],
            broadcast.json()["results"][0]["offset"],
        ]
        assert subscriber.data("question:5") == [{"type": "score", "score": 9}, "both"]
        assert 'herald_api_publications_total{key="notifier",result="published"} 3.0' in metrics
        await subscriber.close()
    finally:
        fleet.close()
