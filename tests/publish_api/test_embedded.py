"""The publish API inside ``./herald run`` on embedded defaults (launch/embedded.py): it
publishes on the in-process bus the socket worker reads, and the banner names its port."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from launch.embedded import start_embedded, stop_embedded
from publish_api.__main__ import DEV_KEY_FILE, checked_settings, development_keys
from qasite.core.settings import Settings
from socketsrv.settings import Settings as SocketSettings
from tests.support.client import HeraldTestClient
from tests.support.redis_server import free_port
from tests.support.waiting import eventually


async def test_a_publication_over_http_reaches_the_embedded_worker(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    qa_settings = Settings(data_dir=data_dir, port=port, public_base_url=f"http://127.0.0.1:{port}")
    api_settings = checked_settings(development_keys({"HERALD_API_PORT": "0"}, data_dir))
    key = (data_dir / DEV_KEY_FILE).read_text().strip()
    assert (data_dir / DEV_KEY_FILE).stat().st_mode & 0o777 == 0o600
    system = await start_embedded(qa_settings, SocketSettings(port=0), api_settings)
    try:
        assert system.api is not None
        assert f"publish API: http://127.0.0.1:{system.api.port}/api/" in system.banner()
        assert str((data_dir / DEV_KEY_FILE).resolve()) in system.banner()
        client = HeraldTestClient(f"ws://127.0.0.1:{system.worker.port}/ws")
        await client.open()
        await client.subscribe("questions:new")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{system.api.port}", headers={"X-API-Key": key}
        ) as api:
            body = {"channel": "questions:new", "data": {"id": 77}, "event_id": "q-77"}
            first = await api.post("/api/publish", json=body)
            again = await api.post("/api/publish", json=body)
        assert first.status_code == 200, first.text
        assert again.json() == {**first.json(), "duplicate": True}
        await eventually(lambda: client.data("questions:new") == [{"id": 77}], timeout_s=20)
        assert client.offsets("questions:new") == [first.json()["offset"]]
        await client.close()
    finally:
        await stop_embedded(system)
    # The key is generated once and kept.
    assert development_keys({}, data_dir)["HERALD_API_KEYS"] == f"dev:{key}"


async def test_a_taken_api_port_leaves_the_rest_running_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    qa_settings = Settings(
        data_dir=tmp_path / "data", port=port, public_base_url=f"http://127.0.0.1:{port}"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"HERALD_API_PORT": str(taken.getsockname()[1])}
        api_settings = checked_settings(development_keys(env, tmp_path / "data"))
        system = await start_embedded(qa_settings, SocketSettings(port=0), api_settings)
        try:
            assert system.api is None
            assert "publish API" not in system.banner()
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        finally:
            await stop_embedded(system)
    err = capsys.readouterr().err
    assert "launch.embedded: the publish API is not started: cannot listen on" in err
