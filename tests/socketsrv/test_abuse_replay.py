"""Replay amplification (issue 11, item 8; docs/protocol.md#limits).

Subscribing from offset 0 and unsubscribing in a loop made the server send 2,988 times the
bytes it received: every subscribe replayed the whole history. What recoveries replay to one
connection is now bounded by a byte bucket (``replay_burst_bytes``, refilled at
``replay_bytes_per_s``); a recovery the bucket cannot cover is not replayed at all and its
subscribe answers ``recovery: "failed"`` (the client reloads over HTTP, as when the history
does not cover it), like Centrifugo's recovery limit. On the in-process bus and on a real
Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from herald_contract.stream import HistoryRead, HistoryResult
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import metric, publish, running_worker, ws_url

CHANNEL = "question:77"
PUBLICATIONS = 20
ITEM = "x" * 1000
"""Each publication's frame is a little over 1 KB: one full replay is about 21 KB."""
BURST = 30_000
"""Room for one full replay, not two."""
LOOPS = 20


@pytest.fixture(params=["memory", "redis"])
async def worker(request: pytest.FixtureRequest) -> AsyncIterator[Worker]:
    overrides: dict[str, Any] = {
        "replay_burst_bytes": BURST,
        "replay_bytes_per_s": 1,  # next to nothing comes back during the test
        "commands_burst": 200,
    }
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        overrides["redis_url"] = server.url
    async with running_worker(**overrides) as w:
        yield w


async def subscribe_since(client: HeraldTestClient, epoch: str, offset: int) -> dict[str, Any]:
    reply = await client.request(
        {"op": "subscribe", "channel": CHANNEL, "since": {"epoch": epoch, "offset": offset}}
    )
    assert reply["type"] == "reply", reply
    result: dict[str, Any] = reply["result"]
    return result


async def unsubscribe(client: HeraldTestClient) -> None:
    assert (await client.request({"op": "unsubscribe", "channel": CHANNEL}))["type"] == "reply"


def received(client: HeraldTestClient) -> int:
    log = client.channels.get(CHANNEL)
    return 0 if log is None else len(log.received)


async def test_replays_past_the_budget_fail_instead_of_resending_the_history(
    worker: Worker,
) -> None:
    for _ in range(PUBLICATIONS):
        await publish(worker, CHANNEL, ITEM)
    client = HeraldTestClient(ws_url(worker))
    try:
        await client.open()
        first = await client.request({"op": "subscribe", "channel": CHANNEL})
        epoch = first["result"]["epoch"]
        assert first["result"]["offset"] == PUBLICATIONS
        await unsubscribe(client)

        # One full replay fits the budget.
        result = await subscribe_since(client, epoch, 0)
        assert result["recovery"] == "recovered"
        await eventually(lambda: received(client) == PUBLICATIONS)
        await unsubscribe(client)
        replayed = metric(worker, "herald_replay_bytes_total")

        # The loop of the review: each subscribe from offset 0 would replay it all again.
        written_before = metric(worker, "herald_bytes_written_total")
        outcomes = []
        for _ in range(LOOPS):
            result = await subscribe_since(client, epoch, 0)
            outcomes.append((result["recovery"], result["offset"]))
            await unsubscribe(client)
        written = metric(worker, "herald_bytes_written_total") - written_before
        assert outcomes == [("failed", PUBLICATIONS)] * LOOPS
        assert received(client) == PUBLICATIONS  # nothing replayed
        assert written < LOOPS * 300, written  # the replies only
        assert PUBLICATIONS * len(ITEM) < replayed < BURST
        assert metric(worker, "herald_replays_refused_total") == LOOPS
        assert metric(worker, "herald_replay_bytes_total") == replayed
        assert metric(worker, "herald_recoveries_total", result="failed") == LOOPS

        # A refused replay loses nothing live: the next publication follows the reply.
        result = await subscribe_since(client, epoch, 0)
        assert result["recovery"] == "failed"
        offset = await publish(worker, CHANNEL, "live")
        assert offset == PUBLICATIONS + 1
        await eventually(lambda: client.data(CHANNEL)[-1:] == ["live"])
        assert client.offsets(CHANNEL)[-1] == offset
    finally:
        await client.close()


async def test_a_small_replay_within_the_budget_is_recovered_every_time(worker: Worker) -> None:
    """A reconnecting client that missed a little is never refused."""
    for _ in range(PUBLICATIONS):
        await publish(worker, CHANNEL, "small")
    client = HeraldTestClient(ws_url(worker))
    try:
        await client.open()
        epoch = (await client.request({"op": "subscribe", "channel": CHANNEL}))["result"]["epoch"]
        await unsubscribe(client)
        for _ in range(LOOPS):
            result = await subscribe_since(client, epoch, PUBLICATIONS - 2)
            assert result["recovery"] == "recovered"
            await unsubscribe(client)
        await eventually(lambda: received(client) == 2 * LOOPS)
        assert metric(worker, "herald_replays_refused_total") == 0
    finally:
        await client.close()


async def test_after_a_refused_replay_subscribes_read_no_history_until_the_budget_refills(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused replay cost a full history read each time before: the loop's cost on
    Redis was the same as replaying it all. Now only the first refusal reads the history;
    the next subscribes read the channel's position alone, and a subscribe that missed
    nothing is still recovered."""
    for _ in range(PUBLICATIONS):
        await publish(worker, CHANNEL, ITEM)
    reads: list[HistoryRead] = []
    history_many = worker.bus.history_many

    async def spied(batch: Sequence[HistoryRead]) -> list[HistoryResult]:
        reads.extend(read for read in batch if read.since is not None)
        return await history_many(batch)

    monkeypatch.setattr(worker.bus, "history_many", spied)
    client = HeraldTestClient(ws_url(worker))
    try:
        await client.open()
        epoch = (await client.request({"op": "subscribe", "channel": CHANNEL}))["result"]["epoch"]
        await unsubscribe(client)
        assert (await subscribe_since(client, epoch, 0))["recovery"] == "recovered"
        await unsubscribe(client)
        reads.clear()
        outcomes = []
        for _ in range(LOOPS):
            result = await subscribe_since(client, epoch, 0)
            outcomes.append(result["recovery"])
            await unsubscribe(client)
        assert outcomes == ["failed"] * LOOPS
        assert len(reads) == 1  # the first refusal's
        assert metric(worker, "herald_replays_refused_total") == LOOPS
        assert (await subscribe_since(client, epoch, PUBLICATIONS))["recovery"] == "recovered"
    finally:
        await client.close()
