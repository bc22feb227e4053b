"""A slow reader with the default marks (issue 12, item 2; docs/protocol.md#conflation and
#heartbeats), on a real Redis with a raw client that reads at most 8 KiB/s.

With the defaults (``conflate_mark_bytes`` 16 KiB, ``send_lowat_bytes`` 16 KiB) a slow reader
used to be closed 4002: its heartbeat waited behind the mark in the worker's transport, 16 KiB
unsent in the kernel and its own receive buffer. Now a congested connection hands the
transport ~1 KiB at a time from its conflating queue and lowers its ``TCP_NOTSENT_LOWAT`` to
that, the heartbeat goes ahead of the queue, and a heartbeat still waiting behind bytes the
client is reading (its TCP acknowledges more) is not taken for a dead client. A client that
stops reading altogether is still closed 4002. Time is scaled: heartbeats every 0.5 s, 2 s to
answer; the flood is ~12 times what the client reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.protocol import State

from socketsrv.worker import Worker
from tests.socketsrv.test_conflation import (
    assert_no_unannounced_gap,
    newest_scores,
    publications,
)
from tests.socketsrv.test_paced_replay import RawClient
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import metric, publish, running_worker, ws_url

CHANNEL = "question:7"
POST = "answer:70"
READ_BYTES_PER_S = 8 * 1024
TICK_S = 0.05
VOTES = 1200
"""Scores of ~260 bytes, 40 every 0.1 s: ~100 KB/s for 3 s, against 8 KiB/s read."""
SETTINGS: dict[str, Any] = {"ping_interval_s": 1.0, "pong_timeout_s": 2.0}
"""Everything else is the default: the outgoing bound, the conflation mark, send_lowat_bytes.
2 s to answer: once its TCP has acknowledged a heartbeat the client still has to read its own
receive buffer (~8.5 KB here: ~1 s) to reach it; the old ~45 KB ahead took ~5.5 s."""


@pytest.fixture
async def worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(redis_url=redis_server.url, **SETTINGS) as w:
        yield w


class SlowReader(RawClient):
    """Reads at most READ_BYTES_PER_S, a slow link's pace, and answers every heartbeat."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._window = (0.0, 0)
        self._answered = 0
        self.stopped = False
        """Stopped reading for good (a frozen tab): no resume, no answer."""

    @classmethod
    async def connect_to(cls, worker: Worker) -> SlowReader:
        client = await cls.open(worker)
        assert isinstance(client, SlowReader)
        return client

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.stopped:
            return
        heartbeats = sum(1 for m in self.messages if m.get("type") == "hb")
        while self._answered < heartbeats and self.ws.state is State.OPEN:
            self._answered += 1
            self.send({"op": "pong"})
        now = time.monotonic()
        start, used = self._window
        if now - start >= TICK_S:
            start, used = now, 0
        used += len(data)
        self._window = (start, used)
        budget = READ_BYTES_PER_S * TICK_S
        if used >= budget and self.transport is not None:
            self.transport.pause_reading()
            delay = start + TICK_S * used / budget - now
            asyncio.get_running_loop().call_later(max(0.0, delay), self._resume)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self.stopped:
            self._window = (time.monotonic(), 0)
            self.transport.resume_reading()

    def stop_for_good(self) -> None:
        self.stopped = True
        self.stop_reading()

    def heartbeats(self) -> int:
        return sum(1 for m in self.messages if m.get("type") == "hb")


def score(value: int) -> dict[str, Any]:
    return {"type": "score", "question": 7, "post": POST, "score": value, "version": value}


async def flood(worker: Worker) -> int:
    """VOTES scores of one post, 40 every 0.1 s; the last offset."""
    last = 0
    for value in range(1, VOTES + 1):
        last = await publish(worker, CHANNEL, {**score(value), "pad": "v" * 160})
        if value % 40 == 0:
            await asyncio.sleep(0.1)
    return last


async def subscribed(client: RawClient) -> None:
    client.send({"op": "subscribe", "channel": CHANNEL})
    await eventually(lambda: len(client.replies()) == 2)


async def test_a_slow_reader_stays_connected_with_the_default_marks_and_gets_the_newest_score(
    worker: Worker,
) -> None:
    assert ws_url(worker)
    client = await SlowReader.connect_to(worker)
    try:
        await subscribed(client)
        top = await flood(worker)
        await eventually(lambda: top in client.offsets() or client.close_code is not None, 30)

        assert client.close_code is None
        assert metric(worker, "herald_disconnects_total", code="4002") == 0
        assert metric(worker, "herald_disconnects_total", code="4001") == 0
        assert newest_scores(client) == {POST: VOTES}
        assert_no_unannounced_gap(client)
        assert len(publications(client)) < VOTES / 2  # it was conflated, not sent everything
        assert client.heartbeats() >= 2  # heard and answered during the flood
    finally:
        client.close()


async def test_a_client_that_stops_reading_behind_a_backlog_is_still_closed_4002(
    worker: Worker,
) -> None:
    client = await SlowReader.connect_to(worker)
    try:
        await subscribed(client)
        client.stop_for_good()
        await flood(worker)
        await eventually(
            lambda: metric(worker, "herald_disconnects_total", code="4002") == 1, timeout_s=20
        )
        assert metric(worker, "herald_disconnects_total", code="4001") == 0
    finally:
        client.close()
