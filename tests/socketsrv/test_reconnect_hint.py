"""Every close that sends a crowd back carries a reconnect hint (issue 12, item 4).

4000 (restart), 4003 (state lost) and 4007 (rebalance) end their reason with ``retry_ms=<n>``,
n drawn in 0..``reconnect_spread_s``, whichever part of the worker closes (a drain, a lost
stream, shedding); docs/protocol.md#reconnecting.
"""

from __future__ import annotations

import re

import pytest

from socketsrv.protocol.codes import CLOSE_TABLE, HINTED, CloseCode, retry_hint_s
from tests.support.client import HeraldTestClient, assert_closed_with
from tests.support.worker import running_worker, ws_url

SPREAD_S = 0.4


@pytest.mark.parametrize("code", sorted(HINTED), ids=lambda c: c.name.lower())
async def test_a_connection_closed_with_a_hinted_code_hears_a_wait_within_the_spread(
    code: CloseCode,
) -> None:
    async with running_worker(reconnect_spread_s=SPREAD_S) as worker:
        clients = [HeraldTestClient(ws_url(worker)) for _ in range(10)]
        for client in clients:
            await client.open()
        for conn in list(worker.connections):
            conn.close_with(code)
        reasons = [await assert_closed_with(client, int(code)) for client in clients]
    pattern = re.escape(CLOSE_TABLE[code].reason) + r" retry_ms=\d+"
    assert all(re.fullmatch(pattern, reason or "") for reason in reasons), reasons
    assert all(0 <= retry_hint_s(reason or "") <= SPREAD_S for reason in reasons)


async def test_a_close_that_does_not_send_a_crowd_back_carries_no_hint() -> None:
    async with running_worker(reconnect_spread_s=SPREAD_S) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        (conn,) = worker.connections
        conn.close_with(CloseCode.SLOW)
        assert await assert_closed_with(client, 4001) == "slow"


async def test_a_lost_stream_sends_its_subscribers_back_with_a_hint() -> None:
    async with running_worker(reconnect_spread_s=SPREAD_S) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        await client.subscribe("question:7")
        hub = worker.hub
        hub._recovery.lose(hub._channels["question:7"], "a test")  # as when the epoch changes
        reason = await assert_closed_with(client, 4003)
        assert re.fullmatch(r"state lost retry_ms=\d+", reason or ""), reason
