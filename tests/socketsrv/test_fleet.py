"""The fleet: N worker processes on one port, metrics summed over them, SIGTERM drains."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import HeraldTestClient
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(
        redis_url=redis_server.url,
        workers=2,
        log=tmp_path / "fleet.log",
        HERALD_DRAIN_TIMEOUT_S="10",
        HERALD_RECONNECT_SPREAD_S="2",
    )
    running.wait_ready()
    yield running
    running.close()


def sample(metrics_text: bytes, name: str) -> list[float]:
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb"(\{[^}]*\})? (\S+)$", re.M)
    return [float(value) for _, value in pattern.findall(metrics_text)]


def worker_pids(fleet: Fleet) -> list[int]:
    children = Path(f"/proc/{fleet.process.pid}/task/{fleet.process.pid}/children")
    pids = [int(p) for p in children.read_text().split()]
    return [
        pid for pid in pids
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]  # fmt: skip


async def open_clients(fleet: Fleet, count: int) -> list[HeraldTestClient]:
    clients = [HeraldTestClient(fleet.url) for _ in range(count)]
    for client in clients:
        await client.open()
        await client.subscribe("question:1")
    return clients


async def test_every_scrape_reports_the_connections_of_the_whole_fleet(fleet: Fleet) -> None:
    clients = await open_clients(fleet, 20)
    try:
        # /readyz answered by one worker says nothing of the other's bus (on a loaded machine
        # it may still be connecting): first both report live, one series per worker.
        deadline = time.monotonic() + 30
        while True:
            status, text = await asyncio.to_thread(fleet.http_get, "/metrics")
            if sample(text, "herald_bus_live") == [1.0, 1.0] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert sample(text, "herald_bus_live") == [1.0, 1.0], fleet.log()
        for _ in range(10):  # the kernel hands each scrape to either worker
            status, text = await asyncio.to_thread(fleet.http_get, "/metrics")
            assert status == 200
            assert sample(text, "herald_connections_open") == [20.0]
            assert sample(text, "herald_bus_live") == [1.0, 1.0]
    finally:
        for client in clients:
            await client.close()


async def test_sigterm_closes_every_client_with_restart_and_a_reconnect_hint(fleet: Fleet) -> None:
    clients = await open_clients(fleet, 20)
    fleet.process.send_signal(signal.SIGTERM)
    closes = [await client.wait_closed(timeout=15) for client in clients]
    assert all(code == 4000 for code, _ in closes)
    assert all(re.fullmatch(r"restart retry_ms=\d+", reason or "") for _, reason in closes)
    assert all(int((reason or "=0").split("=")[1]) <= 2000 for _, reason in closes)
    assert await asyncio.to_thread(fleet.process.wait, 15) == 0


async def test_a_worker_that_dies_is_replaced_and_the_fleet_keeps_serving(fleet: Fleet) -> None:
    victims = worker_pids(fleet)
    assert len(victims) == 2
    os.kill(victims[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = worker_pids(fleet)
        if len(pids) == 2 and victims[0] not in pids:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the dead worker was not replaced:\n{fleet.log()}")
    await asyncio.to_thread(fleet.wait_ready)
    clients = await open_clients(fleet, 10)
    for client in clients:
        await client.close()


async def test_a_fleet_restarted_right_after_a_drain_binds_the_same_port(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Fleet(redis_url=redis_server.url, workers=2, log=tmp_path / "first.log")
    try:
        first.wait_ready()
        clients = await open_clients(first, 10)
        assert first.terminate() == 0  # the workers close every connection first: TIME_WAIT
        for client in clients:
            await client.close()
    finally:
        first.close()
    monkeypatch.setattr("tests.support.fleet.free_port", lambda: first.port)
    second = Fleet(redis_url=redis_server.url, workers=2, log=tmp_path / "second.log")
    try:
        assert second.port == first.port
        second.wait_ready()
    finally:
        second.close()


def readyz_status(fleet: Fleet) -> int:
    """/readyz's status, or 0 when the port refuses the connection."""
    try:
        status, _ = fleet.http_get("/readyz")
    except OSError:
        return 0
    return status


def wait_for_answers(fleet: Fleet, status: int, timeout_s: float = 30.0) -> None:
    """Until several answers in a row are *status* (each worker gives some of them)."""
    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while in_a_row < 4 * fleet.workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz did not settle on {status}:\n{fleet.log()}")
        in_a_row = in_a_row + 1 if readyz_status(fleet) == status else 0
        time.sleep(0.02)


async def test_sigterm_turns_readyz_503_while_the_port_still_accepts_for_the_drain_grace(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A grace far longer than the test: the second SIGTERM ends it.
    fleet = Fleet(
        redis_url=redis_server.url,
        workers=2,
        log=tmp_path / "fleet.log",
        HERALD_DRAIN_GRACE_S="3600",
        HERALD_DRAIN_TIMEOUT_S="10",
        HERALD_RECONNECT_SPREAD_S="1",
    )
    clients: list[HeraldTestClient] = []
    try:
        fleet.wait_ready()
        clients += await open_clients(fleet, 4)
        fleet.process.send_signal(signal.SIGTERM)

        await asyncio.to_thread(wait_for_answers, fleet, 503)
        clients += await open_clients(fleet, 4)  # accepted and served during the grace

        fleet.process.send_signal(signal.SIGTERM)
        closes = [await client.wait_closed(timeout=30) for client in clients]
        await asyncio.to_thread(wait_for_answers, fleet, 0)  # the listeners are closed
        assert await asyncio.to_thread(fleet.process.wait, 30) == 0
    finally:
        for client in clients:
            await client.close()
        fleet.close()
    assert [code for code, _ in closes] == [4000] * 8
