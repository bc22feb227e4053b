"""socketsrv/endpoints.py: the plain HTTP paths of a worker (health, readiness, metrics)."""

from __future__ import annotations

import asyncio

from socketsrv.worker import Worker, WorkerState
from tests.support.client import HeraldTestClient
from tests.support.raw_ws import (
    get_request,
    http_get,
    parse_http_answer,
    raw_connection,
    upgrade_request,
)
from tests.support.waiting import eventually
from tests.support.worker import handshake_rejections, running_worker, ws_url


async def test_healthz_answers_200(worker: Worker) -> None:
    answer = await http_get(worker.port, "/healthz")
    assert (answer.status, answer.body) == (200, b"ok\n")
    assert answer.headers["cache-control"] == "no-store"


async def test_readyz_answers_200_while_the_bus_is_live(worker: Worker) -> None:
    answer = await http_get(worker.port, "/readyz")
    assert (answer.status, answer.body) == (200, b"ready\n")


async def test_readyz_answers_503_once_the_bus_is_closed(worker: Worker) -> None:
    await worker.bus.close()
    answer = await http_get(worker.port, "/readyz")
    assert (answer.status, answer.body) == (503, b"not ready\n")
    assert (await http_get(worker.port, "/healthz")).status == 200


async def test_readyz_answers_503_and_handshakes_get_503_while_draining() -> None:
    # A websocket that never answers the close holds the drain open (close and drain
    # timeouts far away) for as long as the test needs: no race against the drain's end.
    async with running_worker(close_timeout_s=60.0, drain_timeout_s=60.0) as worker:
        async with (
            raw_connection(worker.port) as holder,
            raw_connection(worker.port) as probe,
            raw_connection(worker.port) as late,
        ):
            await holder.open_websocket()
            await eventually(lambda: len(worker.connections) == 1)
            draining = asyncio.ensure_future(worker.drain())
            assert await holder.close_code() == 4000

            ready = parse_http_answer(await probe.exchange(get_request("/readyz")))
            handshake = await late.read_http_head(upgrade_request())
            assert worker.state is WorkerState.DRAINING
        await draining
    assert ready.status == 503
    assert handshake.status == 503
    assert handshake_rejections(worker, "draining") == 1


async def test_metrics_answers_prometheus_text_with_the_open_connections(worker: Worker) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        answer = await http_get(worker.port, "/metrics")
    finally:
        await client.close()
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"\nherald_connections_open 1.0\n" in answer.body
