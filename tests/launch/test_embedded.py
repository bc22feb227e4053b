"""Embedded mode (launch/embedded.py): the Q&A core and a socket worker in one process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from launch.embedded import start_embedded, stop_embedded
from qasite.core.settings import Settings
from socketsrv.settings import Settings as SocketSettings
from tests.support.client import HeraldTestClient
from tests.support.commands import clean_env, port_in_use, run_command
from tests.support.redis_server import free_port


async def login(http: httpx.AsyncClient, email: str) -> tuple[int, dict[str, str]]:
    """Sign up *email* on the site over HTTP, verify it from the dev mailbox, log in."""
    body = {"email": email, "password": "embedded password"}
    assert (await http.post("/api/auth/register", json=body)).status_code == 202
    link = next(m["link"] for m in (await http.get("/dev/mailbox")).json() if m["to"] == email)
    assert (await http.get(link)).status_code == 200
    token = (await http.post("/api/auth/login", json=body)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    user_id: int = (await http.get("/api/auth/me", headers=headers)).json()["id"]
    return user_id, headers


async def test_a_write_on_the_site_reaches_a_websocket_on_the_same_process(tmp_path: Path) -> None:
    port = free_port()
    qa_settings = Settings(
        data_dir=tmp_path / "data",
        port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        argon2_time_cost=1,
        argon2_memory_kib=64,
        relay_poll_interval_s=0.05,
    )
    system = await start_embedded(qa_settings, SocketSettings(port=0))
    try:
        assert "ws://127.0.0.1:" in system.banner()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            asker_id, asker = await login(http, "asker@example.org")
            _, answerer = await login(http, "answerer@example.org")
            question = (
                await http.post(
                    "/api/questions",
                    json={"title": "Embedded question", "body": "b", "tags": ["herald"]},
                    headers=asker,
                )
            ).json()
            token = (await http.post("/api/socket-token", headers=asker)).json()["token"]
            client = HeraldTestClient(f"ws://127.0.0.1:{system.worker.port}/ws", token=token)
            reply = await client.open()
            assert reply is not None and reply["result"]["user"] == str(asker_id)
            channel, inbox = f"question:{question['id']}", f"user:{asker_id}"
            await client.subscribe(channel)
            await client.subscribe(inbox)
            await http.post(
                f"/api/questions/{question['id']}/answers", json={"body": "Hi"}, headers=answerer
            )
            deadline = time.monotonic() + 10
            while not (client.channels[channel].received and client.channels[inbox].received):
                assert time.monotonic() < deadline, "no event reached the websocket"
                await asyncio.sleep(0.02)
            assert client.data(channel)[0]["type"] == "answer"
            assert client.data(inbox)[0]["type"] == "inbox"
            assert client.data(inbox)[0]["unread"] == 1
            await client.close()
    finally:
        await stop_embedded(system)


def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    with port_in_use() as port:
        env = clean_env(HERALD_QA_DATA_DIR=str(tmp_path))
        ended = run_command(["launch.embedded", "--port", str(port), "--socket-port", "0"], env)
    assert ended.returncode == 1
    assert ended.last_line == (
        f"launch.embedded: cannot listen on 127.0.0.1:{port} (HERALD_QA_PORT / --port): "
        "Address already in use"
    ), ended.stderr


def test_a_setting_that_cannot_work_is_refused_in_one_line(tmp_path: Path) -> None:
    env = clean_env(HERALD_QA_DATA_DIR=str(tmp_path), HERALD_ALLOW_ANONYMOUS="perhaps")
    ended = run_command(["launch.embedded"], env)
    assert ended.returncode == 2
    assert ended.last_line == (
        "launch.embedded: HERALD_ALLOW_ANONYMOUS: cannot read 'perhaps' as a boolean: "
        "use one of 1, 0, true, false, yes, no, on, off"
    )
