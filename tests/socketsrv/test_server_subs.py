"""Server-side subscriptions from the token's ``subs`` claim, on a running worker, over the
in-process bus and a real Redis (docs/protocol.md#server-side-subscriptions).

A client that reconnects with its positions in the connect command gets the publications it
missed right behind the connect reply, in the same write, without sending a subscribe.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from socketsrv.channel import Channel
from socketsrv.hub import Hub
from socketsrv.worker import Worker
from tests.support.raw_ws import OP_TEXT, RawConnection, client_frame, raw_connection
from tests.support.redis_server import RedisServer
from tests.support.tokens import TokenIssuer
from tests.support.waiting import eventually
from tests.support.worker import publish, running_worker

INBOX = "user:7"
QUESTION = "question:5"


@pytest.fixture
def worker(worker_with_tokens: Worker) -> Worker:
    """On the memory bus and on a real Redis, checking the issuer's tokens (conftest.py)."""
    return worker_with_tokens


async def send(conn: RawConnection, **command: Any) -> None:
    await conn.send(client_frame(OP_TEXT, json.dumps(command).encode()))


async def read(conn: RawConnection) -> dict[str, Any]:
    """The next frame that is not a heartbeat (the sweep sends one whenever it is due: on a
    loaded machine one came between a replay and the next publication)."""
    while True:
        opcode, payload = await conn.read_frame(timeout=20.0)
        assert opcode == OP_TEXT, (opcode, payload)
        message: dict[str, Any] = json.loads(payload)
        if message.get("type") != "hb":
            return message


async def connect(conn: RawConnection, token: str, **fields: Any) -> dict[str, Any]:
    await conn.open_websocket()
    await send(conn, op="connect", id=1, token=token, **fields)
    return await read(conn)


async def test_a_reconnect_with_positions_gets_what_it_missed_behind_the_connect_reply(
    worker: Worker, issuer: TokenIssuer, writes: list[bytes]
) -> None:
    token = issuer.token("7", subs=[INBOX, QUESTION])
    await publish(worker, INBOX, {"n": 1})
    await publish(worker, QUESTION, {"q": 1})
    async with raw_connection(worker.port) as conn:
        reply = await connect(conn, token)
        assert (reply["type"], reply["id"]) == ("reply", 1), reply
        subs = reply["result"]["subs"]
        assert list(subs) == [INBOX, QUESTION]
        assert subs[INBOX]["recovery"] == subs[QUESTION]["recovery"] == "none"
        assert subs[INBOX]["offset"] == 1
        inbox_at = {"epoch": subs[INBOX]["epoch"], "offset": 1}
    for n in range(2, 5):  # missed while away
        await publish(worker, INBOX, {"n": n})
    # The channel stays live on the worker for its grace period, and a subscribe is answered
    # from what the worker holds: wait until that is all three (over Redis they arrive later).
    await eventually(lambda: worker.hub.channel_offset(INBOX) in (None, 4))
    writes.clear()
    async with raw_connection(worker.port) as conn:
        since = {INBOX: inbox_at, QUESTION: {"epoch": "gone", "offset": 9}}
        reply = await connect(conn, token, since=since)
        assert (reply["type"], reply["id"]) == ("reply", 1), reply
        subs = reply["result"]["subs"]
        assert subs[INBOX] == {"epoch": inbox_at["epoch"], "offset": 4, "recovery": "recovered"}
        assert subs[QUESTION]["recovery"] == "failed"
        assert subs[QUESTION]["offset"] == 1
        missed = [await read(conn) for _ in range(3)]
        assert [(m["type"], m["channel"], m["offset"]) for m in missed] == [
            ("pub", INBOX, 2),
            ("pub", INBOX, 3),
            ("pub", INBOX, 4),
        ]
        assert [m["data"] for m in missed] == [{"n": 2}, {"n": 3}, {"n": 4}]
        # One write: the reply and the replay (nothing of the channel ahead of the reply).
        first = next(chunk for chunk in writes if b'"reply"' in chunk)
        pubs = [first.find(b'"type":"pub","channel":"user:7","offset":%d,' % n) for n in (2, 3, 4)]
        assert 0 <= first.index(b'"type":"reply"') < pubs[0] < pubs[1] < pubs[2], first
        await publish(worker, INBOX, {"n": 5})
        live = await read(conn)
        assert (live["channel"], live["offset"]) == (INBOX, 5)


async def test_a_command_sent_right_after_connect_is_answered_after_the_connect_reply(
    worker: Worker, issuer: TokenIssuer
) -> None:
    async with raw_connection(worker.port) as conn:
        await conn.open_websocket()
        await send(conn, op="connect", id=1, token=issuer.token("7", subs=[INBOX]))
        await send(conn, op="ping", id=2)
        assert [(m["type"], m["id"]) for m in [await read(conn), await read(conn)]] == [
            ("reply", 1),
            ("reply", 2),
        ]


async def test_the_client_cannot_unsubscribe_a_server_side_channel(
    worker: Worker, issuer: TokenIssuer
) -> None:
    async with raw_connection(worker.port) as conn:
        await connect(conn, issuer.token("7", subs=[INBOX]))
        await send(conn, op="unsubscribe", id=2, channel=INBOX)
        error = await read(conn)
        assert (error["type"], error["id"], error["code"]) == ("error", 2, 403)
        await publish(worker, INBOX, {"still": "subscribed"})
        pub = await read(conn)
        assert (pub["channel"], pub["data"]) == (INBOX, {"still": "subscribed"})


@pytest.mark.parametrize(
    "subs",
    [
        pytest.param("user:7", id="not-a-list"),
        pytest.param([f"question:{i}" for i in range(1, 34)], id="too-many"),
        pytest.param(["question:x"], id="bad-name"),
        pytest.param(["user:8"], id="another-users-channel"),
    ],
)
async def test_a_bad_subs_claim_closes_with_4500(
    worker: Worker, issuer: TokenIssuer, subs: object
) -> None:
    async with raw_connection(worker.port) as conn:
        await conn.open_websocket()
        await send(conn, op="connect", id=1, token=issuer.token("7", subs=subs))
        assert await conn.close_code() == 4500


async def test_a_channel_the_worker_cannot_take_is_reported_without_failing_the_connect(
    issuer: TokenIssuer,
) -> None:
    settings: dict[str, Any] = {"jwt_public_key_pem": issuer.public_pem, "max_channels": 1}
    async with running_worker(**settings) as worker, raw_connection(worker.port) as conn:
        reply = await connect(conn, issuer.token("7", subs=[INBOX, QUESTION]))
        subs = reply["result"]["subs"]
        assert subs[INBOX]["recovery"] == "none"
        assert subs[QUESTION] == {"error": {"code": 503, "message": "unavailable"}}
        await send(conn, op="ping", id=2)
        assert (await read(conn))["id"] == 2  # still open


async def test_a_replay_longer_than_the_first_read_and_the_pacing_mark_follows_the_reply(
    issuer: TokenIssuer, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 publications of ~1 KB: past the first history read (64) and the replay mark
    (outbox_max_bytes / 16 = 16 KiB). The other channel's history read is held until the
    inbox's replay waits behind the unsent connect reply, so that the paced replay goes on
    only once the reply (with the 64 frames held behind it) has gone."""
    release = asyncio.Event()
    release.set()
    read_for = Hub._read_for

    async def held_for_question(self: Hub, sub: Any, ch: Channel, since: Any) -> Any:
        if ch.name == QUESTION:
            await release.wait()
        return await read_for(self, sub, ch, since)

    monkeypatch.setattr(Hub, "_read_for", held_for_question)
    settings: dict[str, Any] = {
        "jwt_public_key_pem": issuer.public_pem,
        "redis_url": redis_server.url,
        "outbox_max_bytes": 256 * 1024,
    }
    token = issuer.token("7", subs=[INBOX, QUESTION])
    async with running_worker(**settings) as worker:
        async with raw_connection(worker.port) as conn:
            epoch = (await connect(conn, token))["result"]["subs"][INBOX]["epoch"]
        await eventually(lambda: not worker.connections)
        for n in range(1, 201):
            await publish(worker, INBOX, {"n": n, "pad": "x" * 1000})
        release.clear()
        async with raw_connection(worker.port) as conn:
            await conn.open_websocket()
            since = {INBOX: {"epoch": epoch, "offset": 0}}
            await send(conn, op="connect", id=1, token=token, since=since)
            await eventually(lambda: any(c.replays_waiting for c in worker.connections))
            release.set()
            reply = await read(conn)
            assert reply["result"]["subs"][INBOX]["recovery"] == "recovered", reply
            got = [await read(conn) for _ in range(200)]  # QUESTION has nothing to replay
            assert [m["offset"] for m in got] == list(range(1, 201))
            assert [m["data"]["n"] for m in got] == list(range(1, 201))
