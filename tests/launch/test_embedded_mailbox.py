"""Embedded mode turns the development mailbox on unless told not to, and says so at start
(launch/embedded.py; issue 11, item 10)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from launch.embedded import start_embedded, stop_embedded
from qasite.core.settings import Settings
from socketsrv.settings import Settings as SocketSettings
from tests.support.redis_server import free_port


@pytest.mark.parametrize(("setting", "served"), [(None, True), (False, False)])
async def test_embedded_mode_serves_the_mailbox_unless_it_is_turned_off(
    tmp_path: Path, setting: bool | None, served: bool
) -> None:
    port = free_port()
    qa_settings = Settings(
        data_dir=tmp_path / "data",
        port=port,
        argon2_time_cost=1,
        argon2_memory_kib=64,
        dev_mailbox=setting,
    )
    system = await start_embedded(qa_settings, SocketSettings(port=0))
    try:
        banner = system.banner()
        assert ("/dev/mailbox   (ON, loopback clients only" in banner) is served
        assert ("mailbox:    off" in banner) is not served
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            body = {"email": "ada@example.org", "password": "embedded password"}
            assert (await http.post("/api/auth/register", json=body)).is_success
            r = await http.get("/dev/mailbox")
        if served:
            assert r.status_code == 200
            assert r.json()[0]["to"] == "ada@example.org"
        else:
            assert r.status_code == 404
    finally:
        await stop_embedded(system)
