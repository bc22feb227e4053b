"""Fast open: the connect and the subscribes carried by the upgrade request's open token, on a
running worker over the in-process bus and a real Redis (docs/protocol.md#fast-open).

The 101, the connect reply, every subscribe reply and the replays leave in one write; a bad
open token is a 400 at the handshake, counted; a bad command inside it is answered as the
same message would be.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgpack
import pytest

from socketsrv.protocol.opening import MAX_OPEN_TOKEN_LENGTH, OPEN_PREFIX, open_token
from socketsrv.worker import Worker
from tests.support.raw_ws import (
    OP_BINARY,
    OP_TEXT,
    RawConnection,
    client_frame,
    raw_connection,
    upgrade_request,
)
from tests.support.tokens import TokenIssuer
from tests.support.waiting import eventually
from tests.support.worker import handshake_rejections, metric, publish

QUESTION = "question:5"
TAG = "tag:python"
INBOX = "user:7"


@pytest.fixture
def worker(worker_with_tokens: Worker) -> Worker:
    """On the memory bus and on a real Redis, checking the issuer's tokens (conftest.py)."""
    return worker_with_tokens


async def open_fast(
    conn: RawConnection, commands: list[dict[str, Any]], encoding: str = "herald.v1.json"
) -> int:
    """Send an upgrade request carrying *commands*; the answer's status."""
    offered = f"{encoding}, {open_token(commands)}" if encoding else open_token(commands)
    answer = await conn.read_http_head(upgrade_request(subprotocol=offered))
    return answer.status


async def read(conn: RawConnection) -> dict[str, Any]:
    """The next frame that is not a heartbeat."""
    while True:
        opcode, payload = await conn.read_frame(timeout=20.0)
        message: dict[str, Any] = (
            json.loads(payload) if opcode == OP_TEXT else msgpack.unpackb(payload)
        )
        if message.get("type") != "hb":
            return message


async def send(conn: RawConnection, **command: Any) -> None:
    await conn.send(client_frame(OP_TEXT, json.dumps(command).encode()))


async def test_a_reconnect_gets_the_101_replies_and_replays_in_one_write(
    worker: Worker, writes: list[bytes]
) -> None:
    for n in range(1, 4):
        await publish(worker, QUESTION, {"n": n})
    async with raw_connection(worker.port) as conn:
        status = await open_fast(
            conn,
            [
                {"op": "connect", "id": 1},
                {"op": "subscribe", "id": 2, "channel": QUESTION},
                {"op": "subscribe", "id": 3, "channel": TAG},
            ],
        )
        assert status == 101
        replies = {m["id"]: m for m in [await read(conn) for _ in range(3)]}
        assert replies[1]["result"]["version"] == 1
        question_at = replies[2]["result"]
        assert question_at["offset"] == 3 and question_at["recovery"] == "none"
        assert replies[3]["result"]["offset"] == 0
    for n in range(4, 7):  # missed while away
        await publish(worker, QUESTION, {"n": n})
    # The channel stays live on the worker for its grace period, and a subscribe is answered
    # from what the worker holds: wait until that is all three (over Redis they arrive later).
    await eventually(lambda: worker.hub.channel_offset(QUESTION) in (None, 6))
    writes.clear()
    since = {"epoch": question_at["epoch"], "offset": 3}
    async with raw_connection(worker.port) as conn:
        status = await open_fast(
            conn,
            [
                {"op": "connect", "id": 1},
                {"op": "subscribe", "id": 2, "channel": QUESTION, "since": since},
                {"op": "subscribe", "id": 3, "channel": TAG},
            ],
        )
        assert status == 101
        frames = [await read(conn) for _ in range(6)]
        assert [(f["type"], f.get("id")) for f in frames[:1]] == [("reply", 1)]
        replies = {f["id"]: f["result"] for f in frames if f["type"] == "reply"}
        assert replies[2]["recovery"] == "recovered" and replies[2]["offset"] == 6
        assert [f["data"] for f in frames if f["type"] == "pub"] == [{"n": 4}, {"n": 5}, {"n": 6}]
        first = writes[0]
        assert first.startswith(b"HTTP/1.1 101"), first
        at = [first.find(b'"id":%d' % i) for i in (1, 2, 3)]
        pubs = [first.find(b'"channel":"question:5","offset":%d,' % n) for n in (4, 5, 6)]
        assert all(i > 0 for i in at + pubs), first
        assert at[0] < at[1] < pubs[0] < pubs[1] < pubs[2], first
        await publish(worker, QUESTION, {"n": 7})
        live = await read(conn)
        assert (live["channel"], live["offset"]) == (QUESTION, 7)
    assert metric(worker, "herald_fast_opens_total") == 2


async def test_server_side_subscriptions_and_the_opens_subscribes_share_the_one_write(
    worker: Worker, issuer: TokenIssuer, writes: list[bytes]
) -> None:
    await publish(worker, INBOX, {"n": 1})
    token = issuer.token("7", subs=[INBOX])
    writes.clear()
    async with raw_connection(worker.port) as conn:
        commands = [
            {"op": "connect", "id": 1, "token": token},
            {"op": "subscribe", "id": 2, "channel": QUESTION},
        ]
        assert await open_fast(conn, commands) == 101
        first, second = await read(conn), await read(conn)
        assert (first["type"], first["id"]) == ("reply", 1)
        assert first["result"]["subs"][INBOX]["offset"] == 1
        assert (second["type"], second["id"]) == ("reply", 2)
        assert writes[0].startswith(b"HTTP/1.1 101") and b'"id":2' in writes[0], writes


async def test_a_refused_subscribe_in_the_open_is_answered_and_the_connection_stays(
    worker: Worker,
) -> None:
    async with raw_connection(worker.port) as conn:
        commands = [
            {"op": "connect", "id": 1},
            {"op": "subscribe", "id": 2, "channel": "Question:5"},
            {"op": "subscribe", "id": 3, "channel": INBOX},
            {"op": "subscribe", "id": 4, "channel": QUESTION},
        ]
        assert await open_fast(conn, commands) == 101
        frames = {f["id"]: f for f in [await read(conn) for _ in range(4)]}
        assert frames[1]["type"] == "reply"
        assert (frames[2]["type"], frames[2]["code"]) == ("error", 422)
        assert (frames[3]["type"], frames[3]["code"]) == ("error", 403)
        assert frames[4]["type"] == "reply"
        await send(conn, op="ping", id=5)
        assert await read(conn) == {"type": "reply", "id": 5, "result": {}}


async def test_an_invalid_token_in_the_open_closes_with_4500_after_the_101(
    worker: Worker,
) -> None:
    async with raw_connection(worker.port) as conn:
        commands = [{"op": "connect", "id": 1, "token": "not.a.token"}]
        assert await open_fast(conn, commands) == 101
        assert await conn.close_code() == 4500


async def test_the_msgpack_wire_answers_an_open_written_in_json(worker: Worker) -> None:
    async with raw_connection(worker.port) as conn:
        commands = [{"op": "connect", "id": 1}, {"op": "subscribe", "id": 2, "channel": TAG}]
        assert await open_fast(conn, commands, encoding="herald.v1.msgpack") == 101
        opcode, payload = await conn.read_frame(timeout=20.0)
        assert opcode == OP_BINARY
        assert msgpack.unpackb(payload)["id"] == 1
        assert (await read(conn))["id"] == 2


async def test_an_open_token_alone_means_json_with_no_subprotocol_in_the_answer(
    worker: Worker,
) -> None:
    async with raw_connection(worker.port) as conn:
        offered = open_token([{"op": "connect", "id": 1}])
        answer = await conn.read_http_head(upgrade_request(subprotocol=offered))
        assert answer.status == 101
        assert "sec-websocket-protocol" not in {k.lower() for k in answer.headers}
        assert (await read(conn))["id"] == 1


def _b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


BAD_OPENS = {
    "not base64": OPEN_PREFIX + "%%%",
    "not JSON": OPEN_PREFIX + _b64(b"{nope"),
    "not an array": OPEN_PREFIX + _b64(b'{"op":"connect","id":1}'),
    "empty": OPEN_PREFIX + _b64(b"[]"),
    "no connect first": OPEN_PREFIX + _b64(b'[{"op":"subscribe","id":2,"channel":"tag:x"}]'),
    "another op": OPEN_PREFIX + _b64(b'[{"op":"connect","id":1},{"op":"ping","id":2}]'),
    "not objects": OPEN_PREFIX + _b64(b'[{"op":"connect","id":1},7]'),
    "two tokens": f"{open_token([{'op': 'connect', 'id': 1}])}, "
    f"{open_token([{'op': 'connect', 'id': 1}])}",
    "too long": OPEN_PREFIX + "A" * MAX_OPEN_TOKEN_LENGTH,
}


@pytest.mark.parametrize("offered", BAD_OPENS.values(), ids=BAD_OPENS.keys())
async def test_a_bad_open_token_is_a_400_that_says_why_and_is_counted(
    worker: Worker, offered: str
) -> None:
    async with raw_connection(worker.port) as conn:
        request = upgrade_request(subprotocol=f"herald.v1.json, {offered}")
        conn.writer.write(request)
        await conn.writer.drain()
        answer = await asyncio.wait_for(conn.reader.read(), 20.0)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Bad open token: " in answer, answer
    assert handshake_rejections(worker, "open") == 1
