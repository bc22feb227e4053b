"""launch/system.py: the Q&A core and the socket fleet as two processes over Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from launch.system import fleet_environment
from publisher.publish import Publisher
from qasite.core.keys import with_secrets
from qasite.core.settings import Settings
from qasite.core.tokens import issue_socket_token
from tests.launch.test_embedded import login
from tests.support.client import HeraldTestClient
from tests.support.commands import clean_env, port_in_use, run_command
from tests.support.processes import stop_group
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_until_ok(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the system exited with {process.returncode}"
        if status_of(url) == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")


class RunningSystem:
    def __init__(
        self, process: subprocess.Popen[bytes], data_dir: Path, qa_port: int, ws_port: int
    ):
        self.process = process
        self.data_dir = data_dir
        self.qa_url = f"http://127.0.0.1:{qa_port}"
        self.ws_url = f"ws://127.0.0.1:{ws_port}/ws"
        self.fleet_http = f"http://127.0.0.1:{ws_port}"


@pytest.fixture
def system(redis_server: RedisServer, tmp_path: Path) -> Iterator[RunningSystem]:
    data_dir = tmp_path / "qa-data"
    qa_port, ws_port = free_port(), free_port()
    # Only the shared name of the Redis URL, and the ports as options: the Q&A core must find
    # Redis, and the pages must point at this fleet, with nothing else configured.
    env = clean_env(
        HERALD_REDIS_URL=redis_server.url,
        HERALD_QA_DATA_DIR=str(data_dir),
        HERALD_QA_RELAY_POLL_INTERVAL_S="0.1",
        HERALD_QA_ARGON2_TIME_COST="1",
        HERALD_QA_ARGON2_MEMORY_KIB="64",
    )
    log = (tmp_path / "system.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "launch.system", "--workers", "2", "--qa-workers", "2",
         "--port", str(qa_port), "--socket-port", str(ws_port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    running = RunningSystem(process, data_dir, qa_port, ws_port)
    try:
        wait_until_ok(f"{running.qa_url}/healthz", process)
        wait_until_ok(f"{running.fleet_http}/readyz", process)
        yield running
    finally:
        stop_group(process, timeout_s=30)
        log.close()


async def test_a_user_with_a_token_the_q_and_a_core_signed_receives_what_redis_carries(
    system: RunningSystem, redis_server: RedisServer
) -> None:
    settings = with_secrets(Settings(data_dir=system.data_dir))  # the keys the system generated
    token = issue_socket_token(settings, 42, time.time()).token
    client = HeraldTestClient(system.ws_url, token=token)
    try:
        reply = await client.open()
        assert reply is not None and reply["type"] == "reply", reply
        assert (await client.subscribe("user:42"))["type"] == "reply"
        async with Publisher(redis_server.url) as publisher:
            await publisher.publish("user:42", {"unread": 1})
        await eventually(lambda: client.data("user:42") == [{"unread": 1}])
    finally:
        await client.close()


async def test_with_only_herald_redis_url_a_question_asked_on_the_site_reaches_a_websocket(
    system: RunningSystem,
) -> None:
    client = HeraldTestClient(system.ws_url)
    try:
        await client.open()
        await client.subscribe("questions:new")
        async with httpx.AsyncClient(base_url=system.qa_url) as http:
            _, headers = await login(http, "asker@example.org")
            body = {"title": "Does the relay find Redis?", "body": "b", "tags": ["herald"]}
            asked = await http.post("/api/questions", json=body, headers=headers)
            assert asked.status_code == 201, asked.text
        await eventually(lambda: bool(client.data("questions:new")), timeout_s=15)
        assert client.data("questions:new")[0]["id"] == asked.json()["id"]
    finally:
        await client.close()


def test_the_pages_connect_to_the_fleet_of_the_port_given_as_an_option(
    system: RunningSystem,
) -> None:
    with urllib.request.urlopen(f"{system.qa_url}/", timeout=5) as response:
        page = response.read().decode()
    assert system.ws_url in page


def test_sigterm_stops_both_processes(system: RunningSystem) -> None:
    system.process.send_signal(signal.SIGTERM)
    assert system.process.wait(timeout=30) == 0
    assert status_of(f"{system.qa_url}/healthz") == 0
    assert status_of(f"{system.fleet_http}/healthz") == 0


def test_the_fleet_is_pointed_at_the_development_public_key_unless_one_is_configured(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, socket_token_audience="herald")
    env = fleet_environment({"PATH": "/bin"}, settings)
    assert env["HERALD_JWT_PUBLIC_KEY_FILE"] == str(tmp_path.resolve() / "socket-token-key.pub.pem")
    assert env["HERALD_JWT_AUDIENCE"] == "herald"
    configured = fleet_environment({"HERALD_JWT_PUBLIC_KEY_FILE": "/etc/key.pem"}, settings)
    assert configured["HERALD_JWT_PUBLIC_KEY_FILE"] == "/etc/key.pem"


def test_without_redis_it_points_to_the_embedded_mode(tmp_path: Path) -> None:
    ended = run_command(["launch.system"], clean_env(HERALD_QA_DATA_DIR=str(tmp_path)))
    assert ended.returncode == 2
    assert ended.last_line == (
        "launch.system: HERALD_REDIS_URL is not set: run python -m launch.embedded instead"
    )


def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    env = clean_env(HERALD_QA_DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:1/0")
    with port_in_use() as port:
        ended = run_command(["launch.system", "--socket-port", str(port)], env)
    assert ended.returncode == 1
    assert ended.last_line == (
        f"launch.system: cannot listen on 127.0.0.1:{port} (HERALD_PORT / --socket-port): "
        "Address already in use"
    ), ended.stderr


def test_a_redis_url_without_a_scheme_is_refused_in_one_line(tmp_path: Path) -> None:
    env = clean_env(HERALD_QA_DATA_DIR=str(tmp_path), REDIS_URL="127.0.0.1:6379")
    ended = run_command(["launch.system"], env)
    assert ended.returncode == 2
    assert ended.last_line.startswith("launch.system: REDIS_URL: '127.0.0.1:6379' is not a Redis")
