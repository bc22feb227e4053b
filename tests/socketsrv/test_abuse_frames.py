"""Control-frame and fragment floods (issue 11, item 7; docs/protocol.md#limits).

A client that reads its pongs got 40,815 pings a second answered, and 300,000 empty
continuation frames kept a message open (+8.7 MB). Pings, pongs and every fragment of a
message but its last now cost a token of the command rate limit: a refused ping gets no pong,
and ``flood_refusals`` refusals in a row fail the connection with 4006. Each flood below is one
write of many frames; the worker answers at most what the bucket allows, closes with 4006,
counts the refusals, and keeps serving.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from socketsrv.websocket import Fragments
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient
from tests.support.raw_ws import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawConnection,
    client_frame,
    raw_connection,
)
from tests.support.worker import disconnects_counted, metric, running_worker, ws_url

OP_PONG = 0xA

BURST = 5
FLOOD_REFUSALS = 20
FLOOD = 2000
"""Frames in one flood: 100 times what the limits let through before the close."""

LIMITS = {
    "commands_per_s": 1.0,
    "commands_burst": BURST,
    "flood_refusals": FLOOD_REFUSALS,
    "ping_interval_s": 3600.0,  # no heartbeat frame among the answers read below
}


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    async with running_worker(**LIMITS) as w:
        yield w


async def connected(conn: RawConnection) -> None:
    """Open the websocket and send the connect command (one token); read its reply."""
    await conn.open_websocket()
    await conn.send(client_frame(OP_TEXT, json.dumps({"op": "connect", "id": 1}).encode()))
    opcode, payload = await conn.read_frame()
    assert opcode == OP_TEXT and json.loads(payload)["type"] == "reply", payload


async def frames_until_close(conn: RawConnection, timeout: float = 10.0) -> tuple[list[int], int]:
    """The opcodes the worker sent up to its close frame, and the close code."""
    seen = []
    while True:
        opcode, payload = await conn.read_frame(timeout)
        if opcode == OP_CLOSE:
            return seen, int.from_bytes(payload[:2], "big")
        seen.append(opcode)


def refused(worker: Worker, kind: str) -> float:
    return metric(worker, "herald_frames_refused_total", kind=kind)


async def assert_worker_still_serves(worker: Worker) -> None:
    """A fresh client connects and its commands are answered."""
    probe = HeraldTestClient(ws_url(worker))
    try:
        assert (await probe.open() or {}).get("type") == "reply"
        assert (await probe.request({"op": "ping"}))["type"] == "reply"
    finally:
        await probe.close()


async def test_a_ping_flood_gets_at_most_the_bucket_of_pongs_then_close_4006(
    worker: Worker,
) -> None:
    async with raw_connection(worker.port) as conn:
        await connected(conn)
        await conn.send(*(client_frame(OP_PING, b"p%d" % i) for i in range(FLOOD)))
        sent, code = await frames_until_close(conn)
    assert code == 4006
    pongs = sent.count(OP_PONG)
    # The connect took one token of BURST; a second of refill at most adds one or two.
    assert 1 <= pongs <= BURST + 2, sent
    assert refused(worker, "ping") >= FLOOD_REFUSALS  # more if a token came in between
    assert disconnects_counted(worker, 4006) == 1
    await assert_worker_still_serves(worker)


async def test_a_pong_flood_closes_4006(worker: Worker) -> None:
    async with raw_connection(worker.port) as conn:
        await connected(conn)
        await conn.send(*(client_frame(OP_PONG, b"") for _ in range(FLOOD)))
        sent, code = await frames_until_close(conn)
    assert (sent, code) == ([], 4006)
    assert refused(worker, "pong") >= FLOOD_REFUSALS  # more if a token came in between
    assert disconnects_counted(worker, 4006) == 1
    await assert_worker_still_serves(worker)


async def test_a_flood_of_empty_continuation_frames_closes_4006(worker: Worker) -> None:
    async with raw_connection(worker.port) as conn:
        await connected(conn)
        first = client_frame(OP_TEXT, b'{"op": "ping", ', fin=False)
        await conn.send(first, *(client_frame(OP_CONT, b"", fin=False) for _ in range(FLOOD)))
        sent, code = await frames_until_close(conn)
    assert (sent, code) == ([], 4006)
    assert refused(worker, "fragment") >= FLOOD_REFUSALS  # more if a token came in between
    assert disconnects_counted(worker, 4006) == 1
    await assert_worker_still_serves(worker)


async def test_pings_and_fragmented_messages_within_the_budget_are_served(
    worker: Worker,
) -> None:
    """The budget is the command budget: paced pings are answered and a message in three
    fragments (three tokens) is executed, on a connection that stays open."""
    async with raw_connection(worker.port) as conn:
        await connected(conn)
        for i in range(2):
            await conn.send(client_frame(OP_PING, b"hello %d" % i))
            assert await conn.read_frame() == (OP_PONG, b"hello %d" % i)
        # BURST - 3 tokens are left: a message in two fragments and its last frame takes 2.
        parts = [b'{"op": "ping",', b' "id": 9}']
        await conn.send(client_frame(OP_TEXT, parts[0], fin=False), client_frame(OP_CONT, parts[1]))
        opcode, payload = await conn.read_frame()
    assert opcode == OP_TEXT and json.loads(payload) == {"type": "reply", "id": 9, "result": {}}
    assert refused(worker, "ping") == refused(worker, "fragment") == 0
    assert disconnects_counted(worker, 4006) == 0


def test_a_message_in_many_empty_fragments_holds_only_its_bytes() -> None:
    """100,000 empty fragments once held a list of 100,000 parts (800 KB of pointers)."""
    tracemalloc.start()
    try:
        fragments = Fragments(b'{"op": ', text=True)
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(100_000):
            assert fragments.add(b"", fin=False) is None
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 10_000, grown
    assert fragments.add(b'"pong"}', fin=True) == b'{"op": "pong"}'
