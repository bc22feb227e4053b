"""Client telemetry over a real socket: what a client reports moves the fleet's counters,
once per interval, bounded, and bad reports are refused without harm
(docs/protocol.md#client-telemetry; socketsrv/protocol/telemetry.py, socketsrv/telemetry.py).

A worker on a real redis-server; clients speak JSON and msgpack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from socketsrv.protocol.telemetry import MAX_COUNT, MAX_DURATION_MS
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient, assert_still_open
from tests.support.redis_server import RedisServer
from tests.support.worker import metric, running_worker, ws_url

REPORT = {
    "reconnects": {"4001": 2, "1006": 3, "local": 1, "1001": 1},
    "recovered": 4,
    "recovery_failed": 1,
    "gaps": 1,
    "deaf": 1,
    "disconnected_ms": 5300,
    "delayed_ms": 1200,
}


@pytest.fixture
async def worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(redis_url=redis_server.url, telemetry_interval_s=30.0) as w:
        yield w


async def connected(worker: Worker, *, msgpack_wire: bool = False) -> HeraldTestClient:
    client = HeraldTestClient(ws_url(worker), msgpack_wire=msgpack_wire)
    reply = await client.open()
    assert reply is not None and reply["type"] == "reply", reply
    return client


async def report(client: HeraldTestClient, counts: Any) -> dict[str, Any]:
    return await client.request({"op": "telemetry", "counts": counts})


def client_counters(worker: Worker) -> dict[str, float]:
    """Every herald_client_* sample the report above touches, by a short name."""
    return {
        "4001": metric(worker, "herald_client_reconnects_total", code="4001"),
        "1006": metric(worker, "herald_client_reconnects_total", code="1006"),
        "local": metric(worker, "herald_client_reconnects_total", code="local"),
        "other": metric(worker, "herald_client_reconnects_total", code="other"),
        "recovered": metric(worker, "herald_client_recoveries_total", result="recovered"),
        "failed": metric(worker, "herald_client_recoveries_total", result="failed"),
        "gaps": metric(worker, "herald_client_gaps_repaired_total"),
        "deaf": metric(worker, "herald_client_deaf_reconnects_total"),
        "disconnected_s": metric(worker, "herald_client_disconnected_seconds_total"),
        "delayed_s": metric(worker, "herald_client_delayed_seconds_total"),
    }


def reports(worker: Worker, result: str) -> float:
    return metric(worker, "herald_client_telemetry_reports_total", result=result)


@pytest.mark.parametrize("msgpack_wire", [False, True], ids=["json", "msgpack"])
async def test_a_report_moves_the_client_counters(worker: Worker, msgpack_wire: bool) -> None:
    client = await connected(worker, msgpack_wire=msgpack_wire)
    answer = await report(client, REPORT)
    assert answer["type"] == "reply" and answer["result"] == {}, answer
    assert client_counters(worker) == {
        "4001": 2,
        "1006": 3,
        "local": 1,
        "other": 1,
        "recovered": 4,
        "failed": 1,
        "gaps": 1,
        "deaf": 1,
        "disconnected_s": pytest.approx(5.3),
        "delayed_s": pytest.approx(1.2),
    }
    assert reports(worker, "accepted") == 1
    assert metric(worker, "herald_commands_total", op="telemetry") == 1
    await client.close()


async def test_reports_of_several_clients_add_up(worker: Worker) -> None:
    clients = [await connected(worker) for _ in range(3)]
    for client in clients:
        await report(client, {"gaps": 2, "disconnected_ms": 1000})
    counters = client_counters(worker)
    assert (counters["gaps"], counters["disconnected_s"]) == (6, 3)
    for client in clients:
        await client.close()


async def test_a_second_report_within_the_interval_is_refused_and_not_counted(
    worker: Worker,
) -> None:
    client = await connected(worker)
    await report(client, {"gaps": 1})
    answer = await report(client, {"gaps": 1})
    assert (answer["type"], answer["code"]) == ("error", 429)
    assert client_counters(worker)["gaps"] == 1
    assert reports(worker, "early") == 1
    await assert_still_open(client)
    await client.close()


async def test_a_bad_report_is_refused_with_400_and_counted_and_the_connection_goes_on(
    worker: Worker,
) -> None:
    client = await connected(worker)
    before = client_counters(worker)
    answer = await report(client, {"gaps": -5, "deaf": 1})
    assert (answer["type"], answer["code"]) == ("error", 400), answer
    assert client_counters(worker) == before
    assert reports(worker, "invalid") == 1
    assert metric(worker, "herald_errors_total", code="400") == 1
    pong = await client.request({"op": "ping"})
    assert pong["type"] == "reply"
    await client.close()


async def test_one_client_cannot_inflate_a_counter_past_the_clamps(worker: Worker) -> None:
    client = await connected(worker)
    huge = 2**31 - 1
    answer = await report(
        client, {"gaps": huge, "disconnected_ms": huge, "reconnects": {"9999": huge}}
    )
    assert answer["type"] == "reply"
    counters = client_counters(worker)
    assert (counters["gaps"], counters["other"]) == (MAX_COUNT, MAX_COUNT)
    assert counters["disconnected_s"] == MAX_DURATION_MS / 1000
    assert reports(worker, "clamped") == 1
    await client.close()


async def test_unknown_keys_are_ignored_and_counted(worker: Worker) -> None:
    client = await connected(worker)
    answer = await report(client, {"gaps": 1, "from_a_newer_client": 3})
    assert answer["type"] == "reply"
    assert client_counters(worker)["gaps"] == 1
    assert metric(worker, "herald_client_telemetry_ignored_keys_total") == 1
    await client.close()


async def test_a_report_before_connect_is_not_connected(worker: Worker) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open(send_connect=False)
    answer = await report(client, REPORT)
    assert (answer["type"], answer["code"]) == ("error", 401)
    assert client_counters(worker)["gaps"] == 0
    await client.close()
