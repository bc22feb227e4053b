"""Per-key conflation instead of disconnecting (issue 12, item 2; docs/protocol.md#conflation).

A client on a slow link does not need every intermediate score of a hot question, only the
newest. Past ``conflate_mark_bytes`` unsent on its connection, a score publication supersedes
the queued, not yet written one of the same post; only past ``outbox_max_bytes`` is the client
closed 4001. The first frame of the channel after a dropped offset says so (``conflated``), so
the client sees no gap to repair. On a real Redis, with a raw client that stops reading.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from socketsrv.worker import Worker
from tests.socketsrv.test_paced_replay import RawClient
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import metric, publish, running_worker

CHANNEL = "question:7"
POSTS = ("question:7", "answer:70", "answer:71")
VOTES = 300
"""Per post: 900 score frames of ~260 bytes, 230 KB, past what the kernel and the outgoing
bound (64 KiB) hold together for a client that reads nothing."""
PAD = "v" * 160
OUTBOX = 64 * 1024
SETTINGS: dict[str, Any] = {
    "outbox_max_bytes": OUTBOX,
    "conflate_mark_bytes": 4096,
    "send_lowat_bytes": 1024,
    "ping_interval_s": 60.0,  # no heartbeat goes unanswered while the client is stopped
    "pong_timeout_s": 60.0,
}


@pytest.fixture
async def worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(redis_url=redis_server.url, **SETTINGS) as w:
        yield w


@pytest.fixture
async def unconflating_worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(
        redis_url=redis_server.url, **{**SETTINGS, "conflate_mark_bytes": 0}
    ) as w:
        yield w


def score(post: str, value: int) -> dict[str, Any]:
    """A score event as the Q&A core publishes it (qasite/domain/events.py), padded."""
    return {
        "type": "score",
        "question": 7,
        "post": post,
        "score": value,
        "version": value,
        "pad": PAD,
    }


def answer(n: int) -> dict[str, Any]:
    return {"type": "answer", "question": 7, "answer": {"id": 1000 + n}, "pad": PAD}


async def subscribed_and_stopped(worker: Worker) -> RawClient:
    client = await RawClient.open(worker)
    client.send({"op": "subscribe", "channel": CHANNEL})
    await eventually(lambda: len(client.replies()) == 2)
    client.stop_reading()
    return client


async def received_by_the_worker(worker: Worker, count: int) -> None:
    """Handled every publication, or closed its slow client (and left the channel)."""
    await eventually(
        lambda: (
            metric(worker, "herald_publications_received_total") >= count or closed_slow(worker)
        ),
        timeout_s=30,
    )


async def vote(worker: Worker, rounds: int = VOTES, first: int = 1) -> int:
    """Every post voted *rounds* times, interleaved (scores from *first* on); the last offset."""
    last = 0
    for value in range(first, first + rounds):
        for post in POSTS:
            last = await publish(worker, CHANNEL, score(post, value))
    return last


def closed_slow(worker: Worker) -> bool:
    """The worker closed its client 4001 (the close frame may never reach a client that
    reads this slowly: the worker aborts after close_timeout_s)."""
    return metric(worker, "herald_disconnects_total", code="4001") == 1


def publications(client: RawClient) -> list[dict[str, Any]]:
    return [m for m in client.messages if m.get("type") == "pub"]


def assert_no_unannounced_gap(client: RawClient) -> None:
    """Each publication follows the one before, or says the offsets between were conflated."""
    last = 0
    for pub in publications(client):
        offset = pub["offset"]
        assert offset > last, f"offset {offset} after {last}"
        if offset != last + 1:
            assert pub.get("conflated", offset) <= last + 1, f"unannounced gap before {offset}"
        last = offset


def newest_scores(client: RawClient) -> dict[str, int]:
    scores: dict[str, int] = {}
    for pub in publications(client):
        data = pub["data"]
        if data["type"] == "score":
            assert data["score"] > scores.get(data["post"], 0), "an older score after a newer"
            scores[data["post"]] = data["score"]
    return scores


async def test_a_client_that_stops_reading_while_scores_flow_stays_connected_with_the_newest(
    worker: Worker,
) -> None:
    client = await subscribed_and_stopped(worker)
    try:
        top = await vote(worker)
        await received_by_the_worker(worker, top)
        (conn,) = worker.connections
        assert conn.held_frames < 10  # a score per post (and a heartbeat) waits, not 900

        client.resume_reading()
        await eventually(lambda: top in client.offsets() or client.close_code is not None)
        assert client.close_code is None
        assert metric(worker, "herald_disconnects_total", code="4001") == 0
        assert newest_scores(client) == dict.fromkeys(POSTS, VOTES)
        assert_no_unannounced_gap(client)
        assert len(client.offsets()) < top  # what it got was conflated, not everything
        assert metric(worker, "herald_conflated_publications_total") == top - len(client.offsets())
    finally:
        client.close()


async def test_without_conflation_the_same_client_is_closed_4001(
    unconflating_worker: Worker,
) -> None:
    worker = unconflating_worker
    client = await subscribed_and_stopped(worker)
    try:
        top = await vote(worker)
        await received_by_the_worker(worker, top)
        client.resume_reading()
        await eventually(lambda: closed_slow(worker) or top in client.offsets())
        assert closed_slow(worker)
        assert metric(worker, "herald_conflated_publications_total") == 0
    finally:
        client.close()


async def test_publications_without_a_key_are_never_dropped(worker: Worker) -> None:
    client = await subscribed_and_stopped(worker)
    try:
        answers = []
        top = 0
        for n in range(60):  # 60 answers of ~250 bytes: 15 KB, under the outgoing bound
            answers.append(await publish(worker, CHANNEL, answer(n)))
            top = await vote(worker, rounds=2, first=2 * n + 1)
        await received_by_the_worker(worker, top)
        assert metric(worker, "herald_conflated_publications_total") > 0

        client.resume_reading()
        await eventually(lambda: top in client.offsets() or client.close_code is not None)
        assert client.close_code is None
        got = client.offsets()
        assert [a for a in answers if a in got] == answers
        assert_no_unannounced_gap(client)
        assert newest_scores(client) == dict.fromkeys(POSTS, 120)
    finally:
        client.close()


async def test_past_the_outgoing_bound_a_client_is_still_closed_4001(worker: Worker) -> None:
    client = await subscribed_and_stopped(worker)
    try:
        top = 0
        for n in range(400):  # 100 KB of answers: nothing to conflate, past the bound
            top = await publish(worker, CHANNEL, answer(n))
        await received_by_the_worker(worker, top)
        client.resume_reading()
        await eventually(lambda: closed_slow(worker) or top in client.offsets())
        assert closed_slow(worker)
    finally:
        client.close()


async def test_a_client_that_reads_gets_every_score_unconflated(worker: Worker) -> None:
    client = await RawClient.open(worker)
    try:
        client.send({"op": "subscribe", "channel": CHANNEL})
        await eventually(lambda: len(client.replies()) == 2)
        top = await vote(worker, rounds=20)
        await eventually(lambda: top in client.offsets())
        assert client.offsets() == list(range(1, top + 1))
        assert all("conflated" not in pub for pub in publications(client))
        await asyncio.sleep(0)
    finally:
        client.close()
