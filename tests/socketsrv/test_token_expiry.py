"""A token that runs out on an open connection (issue 12, item 8; docs/protocol.md#tokens).

The worker closes it with 4004 at the first sweep after ``expires_at`` plus the leeway the
connect allows, not at the connection's next heartbeat visit (which comes only every half
``ping_interval_s``). Time is a ManualClock; the sweeps are run by hand.
"""

from __future__ import annotations

from socketsrv.worker import Worker, verifier_of
from tests.support.client import HeraldTestClient, assert_closed_with, assert_still_open
from tests.support.tokens import TokenIssuer
from tests.support.waiting import eventually
from tests.support.worker import ManualClock, disconnects_counted, running_worker, ws_url

PING_S = 25.0
"""A production heartbeat interval: a connection's visits come 12.5 s apart."""


def leeway_of(worker: Worker) -> float:
    verifier = verifier_of(worker.settings)
    assert verifier is not None
    return verifier.leeway_s


async def connected(worker: Worker, token: str) -> HeraldTestClient:
    client = HeraldTestClient(ws_url(worker), token=token)
    reply = await client.open()
    assert reply is not None and reply["type"] == "reply", reply
    return client


async def answered(worker: Worker) -> None:
    """The client answered the heartbeat of the last sweep."""
    (conn,) = worker.connections
    await eventually(conn.session.heartbeat_due)


async def test_an_expired_token_is_closed_within_a_sweep_of_exp_plus_the_leeway(
    issuer: TokenIssuer,
) -> None:
    clock = ManualClock()
    async with running_worker(
        clock=clock, jwt_public_key_pem=issuer.public_pem, ping_interval_s=PING_S
    ) as worker:
        leeway_s = leeway_of(worker)
        client = await connected(worker, issuer.token("7", exp=clock.now + 3))
        try:
            clock.sweep()  # the connection's visit: a heartbeat; the next one in 12.5 s
            await answered(worker)
            clock.advance(3 + leeway_s - 0.01)
            clock.sweep()
            await assert_still_open(client)  # accepted until exp plus the leeway
            clock.advance(0.01)
            clock.sweep()  # mid-cycle: no visit is due, the token's deadline is
            await assert_closed_with(client, 4004)
        finally:
            await client.close()
        assert disconnects_counted(worker, 4004) == 1


async def test_a_refreshed_token_is_closed_at_its_new_deadline_not_the_old_one(
    issuer: TokenIssuer,
) -> None:
    clock = ManualClock()
    async with running_worker(
        clock=clock, jwt_public_key_pem=issuer.public_pem, ping_interval_s=PING_S
    ) as worker:
        leeway_s = leeway_of(worker)
        client = await connected(worker, issuer.token("7", exp=clock.now + 3))
        try:
            answer = await client.request(
                {"op": "refresh", "token": issuer.token("7", exp=clock.now + 6)}
            )
            assert answer["type"] == "reply", answer
            clock.advance(3 + leeway_s + 1)
            clock.sweep()
            await assert_still_open(client)
            clock.advance(3)
            clock.sweep()
            await assert_closed_with(client, 4004)
        finally:
            await client.close()


async def test_an_anonymous_connection_never_expires() -> None:
    clock = ManualClock()
    async with running_worker(clock=clock, ping_interval_s=PING_S) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        try:
            clock.sweep()
            await answered(worker)
            clock.advance(3600)
            clock.sweep()
            await assert_still_open(client)
        finally:
            await client.close()
        assert disconnects_counted(worker, 4004) == 0
