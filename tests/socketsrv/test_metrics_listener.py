"""/metrics on a listener of its own (issue 11, item 11): ``metrics_port`` moves it off the
public port, for one worker (its own listener) and for a fleet (the supervisor's, summed)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from herald_contract.metrics_listener import MetricsListener, MetricsPortUnavailable
from socketsrv.worker import Worker
from tests.socketsrv.test_fleet import open_clients, sample
from tests.support.fleet import Fleet
from tests.support.raw_ws import http_get
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually
from tests.support.worker import metric, running_worker


def scrape(port: int, path: str = "/metrics") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_without_metrics_port_metrics_stays_on_the_public_port(worker: Worker) -> None:
    answer = await http_get(worker.port, "/metrics")
    assert answer.status == 200
    assert b"herald_connections_open" in answer.body
    assert b"herald_metrics_refused_total 0.0" in answer.body  # served: nothing refused
    assert worker.metrics_listener is None


async def test_with_metrics_port_the_public_port_answers_404_and_the_listener_serves() -> None:
    async with running_worker(metrics_port=0) as worker:
        public = await http_get(worker.port, "/metrics")
        assert public.status == 404
        assert (await http_get(worker.port, "/healthz")).status == 200  # health stays public
        listener = worker.metrics_listener
        assert listener is not None
        assert listener.port != worker.port
        status, body = await asyncio.to_thread(scrape, listener.port)
        assert status == 200
        assert b"herald_connections_open" in body
        assert (await asyncio.to_thread(scrape, listener.port, "/readyz"))[0] == 404
        assert metric(worker, "herald_metrics_refused_total") == 1  # the public port's
    with pytest.raises(urllib.error.URLError):  # stopped with the worker
        await asyncio.to_thread(scrape, listener.port)


async def test_every_metrics_request_refused_on_the_public_port_is_counted() -> None:
    async with running_worker(metrics_port=0) as worker:
        assert metric(worker, "herald_metrics_refused_total") == 0
        for _ in range(3):
            assert (await http_get(worker.port, "/metrics?x=1")).status == 404
        assert (await http_get(worker.port, "/healthz")).status == 200  # not counted
        assert (await http_get(worker.port, "/metricsx")).status != 200
        assert metric(worker, "herald_metrics_refused_total") == 3
        listener = worker.metrics_listener
        assert listener is not None
        _, body = await asyncio.to_thread(scrape, listener.port)
        assert b"herald_metrics_refused_total 3.0" in body


async def test_a_metrics_port_in_use_fails_the_start() -> None:
    taken = MetricsListener.start("127.0.0.1", 0, lambda: b"")
    try:
        with pytest.raises(MetricsPortUnavailable):
            async with running_worker(metrics_port=taken.port):
                pass
    finally:
        taken.close()


@pytest.mark.timeout(120)
async def test_a_fleet_serves_the_sum_on_the_supervisor_listener(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    fleet = Fleet(
        redis_url=redis_server.url,
        workers=2,
        log=tmp_path / "fleet.log",
        HERALD_METRICS_PORT=str(metrics_port),
    )
    try:
        fleet.wait_ready()
        clients = await open_clients(fleet, 6)
        try:
            for _ in range(6):  # either worker answers the public port: both 404
                status, _ = await asyncio.to_thread(fleet.http_get, "/metrics")
                assert status == 404

            def summed() -> bool:
                status, text = scrape(metrics_port)
                return (
                    status == 200
                    and sample(text, "herald_connections_open") == [6.0]
                    and sample(text, "herald_bus_live") == [1.0, 1.0]  # a series per worker
                    and sample(text, "herald_metrics_refused_total") == [6.0]  # whichever
                )

            await eventually(summed, timeout_s=20)
        finally:
            for client in clients:
                await client.close()
    finally:
        fleet.close()
