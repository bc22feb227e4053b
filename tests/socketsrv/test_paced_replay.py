"""Replays paced to what the client drains (issue 12, item 1; docs/protocol.md#recovery).

A recovering subscriber used to get its whole replay pushed into its outgoing buffer at once:
past ``outbox_max_bytes`` it was closed 4001, came back and asked again (about 8 times each
in the slow-client experiment, bench/results/SLOW.md). Now the replay is fed from history a
slice at a time, whenever the connection has drained below its replay mark, and live
publications that come meanwhile are read from history in their turn: exactly once, in order,
and nothing is held for the replay once it has caught up. On a real Redis.

The client here is a raw websocket whose reading the test stops and resumes
(``transport.pause_reading``); the server side of its socket gets a small send buffer, so
that what the client does not read stays in the worker's transport instead of the kernel's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from herald_contract.bus import HistoryRead, HistoryResult
from socketsrv.connection import ClientConnection, ConnectionState
from socketsrv.heap import HeapTrim
from socketsrv.history import FIRST_READ_PUBLICATIONS
from socketsrv.recovery import ReplayTurns
from socketsrv.worker import Worker
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import metric, publish, running_worker, ws_url

CHANNEL = "question:12"
ITEM = "p" * 32_000
"""A publication's frame is a little over 32 KB, as in the slow-client experiment."""
OUTBOX = 1024 * 1024
HISTORY = 48
"""1.5 MiB of history: more than the outgoing buffer holds."""
SERVER_SNDBUF = 16 * 1024


@pytest.fixture
async def worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(
        redis_url=redis_server.url,
        outbox_max_bytes=OUTBOX,
        replay_burst_bytes=64 * OUTBOX,  # the budget is not what these tests are about
        ping_interval_s=60.0,  # no heartbeat goes unanswered while the client is paused
        pong_timeout_s=60.0,
    ) as w:
        yield w


@pytest.fixture
async def short_history_worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(
        redis_url=redis_server.url,
        outbox_max_bytes=OUTBOX,
        history_size=10,
        replay_burst_bytes=64 * OUTBOX,
        ping_interval_s=60.0,
        pong_timeout_s=60.0,
    ) as w:
        yield w


class RawClient(asyncio.Protocol):
    """A websocket client (websockets' sans-I/O protocol) that records every message."""

    def __init__(self, url: str) -> None:
        self.ws = ClientProtocol(
            parse_uri(url), subprotocols=[Subprotocol("herald.v1.json")], max_size=None
        )
        self.transport: asyncio.Transport | None = None
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._ids = iter(range(1, 2**31))

    @classmethod
    async def open(cls, worker: Worker) -> RawClient:
        """Connected (101 and the connect reply), with a small receive buffer of its own."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", worker.port))
        _, client = await loop.create_connection(lambda: cls(ws_url(worker)), sock=sock)
        assert await client.opened == 101
        client.send({"op": "connect"})
        await eventually(lambda: client.replies() != [])
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                self.opened.set_result(event.status_code)
            elif isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self.messages.append(json.loads(bytes(event.data)))
                elif event.opcode is Opcode.CLOSE:
                    self.close_code = Close.parse(event.data).code
        self._flush()

    def _flush(self) -> None:
        assert self.transport is not None
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)

    def send(self, command: dict[str, Any]) -> None:
        self.ws.send_text(json.dumps({**command, "id": next(self._ids)}).encode())
        self._flush()

    def stop_reading(self) -> None:
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # What it received

    def replies(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "reply"]

    def offsets(self) -> list[int]:
        return [m["offset"] for m in self.messages if m.get("type") == "pub"]

    def subscribe_result(self) -> dict[str, Any]:
        results = [r["result"] for r in self.replies() if "recovery" in r["result"]]
        assert len(results) == 1, self.messages[-3:]
        result: dict[str, Any] = results[0]
        return result


def server_side(worker: Worker) -> ClientConnection:
    """The worker's end of the one client connection, with a small kernel send buffer."""
    (conn,) = worker.connections
    assert conn.transport is not None
    sock = conn.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_SNDBUF)
    return conn


async def holds_unsent_bytes(conn: ClientConnection) -> None:
    """Wait until the client's not reading shows: the worker's transport holds bytes (or the
    connection was closed already)."""
    transport = conn.transport
    assert transport is not None
    await eventually(
        lambda: transport.get_write_buffer_size() > 0 or conn.state is not ConnectionState.OPEN
    )


async def publish_many(worker: Worker, count: int) -> int:
    last = 0
    for _ in range(count):
        last = await publish(worker, CHANNEL, ITEM)
    return last


def subscribe_from_the_start(client: RawClient) -> None:
    client.send({"op": "subscribe", "channel": CHANNEL, "since": {"epoch": "-", "offset": 0}})


async def test_a_replay_bigger_than_the_outgoing_buffer_arrives_whole_instead_of_closing_4001(
    worker: Worker,
) -> None:
    await publish_many(worker, HISTORY)
    client = await RawClient.open(worker)
    try:
        subscribe_from_the_start(client)
        await eventually(
            lambda: len(client.offsets()) >= HISTORY or client.close_code is not None, timeout_s=30
        )
        assert client.close_code is None
        assert client.subscribe_result()["recovery"] == "recovered"
        assert client.offsets() == list(range(1, HISTORY + 1))
    finally:
        client.close()


async def test_a_recovering_subscriber_that_stops_reading_gets_every_publication_once_in_order(
    worker: Worker,
) -> None:
    await publish_many(worker, HISTORY)
    client = await RawClient.open(worker)
    try:
        conn = server_side(worker)
        client.stop_reading()
        subscribe_from_the_start(client)
        await holds_unsent_bytes(conn)

        # More than the outgoing buffer holds is published while the client reads nothing.
        top = await publish_many(worker, HISTORY)
        assert metric(worker, "herald_disconnects_total", code="4001") == 0
        assert conn.replays_waiting == 1

        client.resume_reading()
        await eventually(
            lambda: top in client.offsets() or client.close_code is not None, timeout_s=30
        )
        assert client.close_code is None
        assert client.subscribe_result()["recovery"] == "recovered"
        assert client.offsets() == list(range(1, top + 1))

        # Live again: the next publication comes straight from the fan-out.
        await publish(worker, CHANNEL, "live")
        await eventually(lambda: top + 1 in client.offsets())
        assert metric(worker, "herald_paced_replays_total", result="caught_up") == 1
    finally:
        client.close()


async def test_nothing_taken_for_a_paced_replay_is_kept_once_it_has_caught_up(
    worker: Worker,
) -> None:
    await publish_many(worker, HISTORY)
    client = await RawClient.open(worker)
    tracemalloc.start()
    try:
        conn = server_side(worker)
        gc.collect()
        before = _held_by_the_server()
        client.stop_reading()
        subscribe_from_the_start(client)
        await holds_unsent_bytes(conn)
        top = await publish_many(worker, HISTORY)
        client.resume_reading()
        await eventually(lambda: top in client.offsets(), timeout_s=30)
        await eventually(lambda: conn.transport.get_write_buffer_size() == 0)  # type: ignore[union-attr]

        assert conn.replays_waiting == 0
        # The bound is back once the connection is no longer congested (connection.CALM_S).
        await eventually(lambda: conn.transport.get_write_buffer_limits()[1] == OUTBOX)  # type: ignore[union-attr]
        assert worker.hub.subscriber_count(CHANNEL) == 1
        client.messages.clear()
        gc.collect()
        # 3 MiB went through the replay; what the server code holds is back where it was.
        assert _held_by_the_server() - before < 256 * 1024
    finally:
        tracemalloc.stop()
        client.close()


def _held_by_the_server() -> int:
    """Bytes allocated by the worker's and the contract's code, still held."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [
            tracemalloc.Filter(True, "*/socketsrv/*"),
            tracemalloc.Filter(True, "*/herald_contract/*"),
        ]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


async def test_a_paced_replay_whose_history_is_trimmed_closes_4003_and_its_recovery_fails(
    short_history_worker: Worker,
) -> None:
    worker = short_history_worker
    await publish_many(worker, 10)
    client = await RawClient.open(worker)
    try:
        conn = server_side(worker)
        client.stop_reading()
        subscribe_from_the_start(client)
        await holds_unsent_bytes(conn)
        # The history keeps 10: what the replay has not pushed yet is trimmed away.
        await publish_many(worker, 30)

        client.resume_reading()
        await eventually(lambda: client.close_code is not None, timeout_s=30)
        assert client.close_code == 4003
        assert metric(worker, "herald_paced_replays_total", result="lost") == 1
        assert metric(worker, "herald_disconnects_total", code="4001") == 0
        got = client.offsets()
        assert got == list(range(1, len(got) + 1))  # what it got has no gap
        epoch = client.subscribe_result()["epoch"]
    finally:
        client.close()

    # Reconnecting from where it stopped: the history no longer covers it.
    again = await RawClient.open(worker)
    try:
        again.send(
            {"op": "subscribe", "channel": CHANNEL, "since": {"epoch": epoch, "offset": got[-1]}}
        )
        await eventually(lambda: len(again.replies()) == 2)
        assert again.subscribe_result()["recovery"] == "failed"
        assert again.subscribe_result()["offset"] == 40
    finally:
        again.close()


# What a subscribe reads, and what it is charged

LONG = FIRST_READ_PUBLICATIONS + 36
"""A replay longer than a subscribe's first read."""


class ReadLog:
    """Every history read the worker's bus answers: how many publications each returned."""

    def __init__(self, worker: Worker) -> None:
        self.returned: list[int] = []
        self.asked: list[HistoryRead] = []
        answer = worker.bus.history_many

        async def recording(reads: Sequence[HistoryRead]) -> list[HistoryResult]:
            results = await answer(reads)
            self.asked += reads
            self.returned += [len(r.publications) for r in results]
            return results

        worker.bus.history_many = recording  # type: ignore[method-assign]


async def test_a_long_replay_is_read_a_first_read_then_slices_never_whole(worker: Worker) -> None:
    await publish_many(worker, LONG)
    reads = ReadLog(worker)
    client = await RawClient.open(worker)
    try:
        subscribe_from_the_start(client)
        await eventually(
            lambda: len(client.offsets()) >= LONG or client.close_code is not None, timeout_s=30
        )
        assert client.close_code is None
        assert client.subscribe_result()["recovery"] == "recovered"
        assert client.offsets() == list(range(1, LONG + 1))
        # 3.2 MB missed: the subscribe held at most a first read of it, never the whole.
        assert reads.returned[0] == FIRST_READ_PUBLICATIONS
        assert max(reads.returned) == FIRST_READ_PUBLICATIONS
        assert metric(worker, "herald_paced_replays_total", result="caught_up") == 1
        assert metric(worker, "herald_replay_bytes_total") >= LONG * len(ITEM)
    finally:
        client.close()


async def test_a_short_replay_of_small_publications_is_still_one_read(worker: Worker) -> None:
    for n in range(10):
        await publish(worker, CHANNEL, f"small {n}")
    reads = ReadLog(worker)
    client = await RawClient.open(worker)
    try:
        subscribe_from_the_start(client)
        await eventually(lambda: len(client.offsets()) >= 10)
        assert client.offsets() == list(range(1, 11))
        assert reads.returned == [10]
        assert metric(worker, "herald_paced_replays_total", result="started") == 0
    finally:
        client.close()


@pytest.fixture
async def tight_budget_worker(redis_server: RedisServer) -> AsyncIterator[Worker]:
    async with running_worker(
        redis_url=redis_server.url,
        outbox_max_bytes=OUTBOX,
        history_size=LONG,
        # More than a first read of 32 KB publications, less than the whole replay.
        replay_burst_bytes=(FIRST_READ_PUBLICATIONS + 8) * len(ITEM),
        replay_bytes_per_s=1.0,
        ping_interval_s=60.0,
        pong_timeout_s=60.0,
    ) as w:
        yield w


async def test_a_replay_the_budget_cannot_cover_is_refused_from_its_first_read_alone(
    tight_budget_worker: Worker,
) -> None:
    worker = tight_budget_worker
    await publish_many(worker, LONG)
    reads = ReadLog(worker)
    client = await RawClient.open(worker)
    try:
        # What was read fits in the budget; the count missed times their size does not.
        subscribe_from_the_start(client)
        await eventually(lambda: len(client.replies()) == 2)
        result = client.subscribe_result()
        assert (result["recovery"], result["offset"]) == ("failed", LONG)
        assert client.offsets() == []
        assert reads.returned == [FIRST_READ_PUBLICATIONS]
        assert metric(worker, "herald_replays_refused_total") == 1
        assert metric(worker, "herald_paced_replays_total", result="started") == 0

        # Asking again at once costs the position only (the refusal gate, issue 11), which
        # the worker holding the channel live knows without a read (socketsrv/tail.py).
        client.send({"op": "unsubscribe", "channel": CHANNEL})
        subscribe_from_the_start(client)
        await eventually(lambda: len(client.replies()) == 4)
        assert [r["result"].get("recovery") for r in client.replies()][-1] == "failed"
        assert reads.returned == [FIRST_READ_PUBLICATIONS]
        assert metric(worker, "herald_subscribe_reads_total", source="worker") == 1
    finally:
        client.close()


# The share of the worker replays take


async def test_slices_beyond_the_turns_share_wait_for_later_turns_behind_live_work() -> None:
    turns = ReplayTurns(per_turn=2)
    order: list[str] = []

    async def a_slice(n: int) -> None:
        await turns.take()
        order.append(f"slice {n}")

    slices = [asyncio.ensure_future(a_slice(n)) for n in range(6)]
    await asyncio.sleep(0)  # every replay asked; the turn's two started
    assert order == ["slice 0", "slice 1"]
    assert turns.waiting == 4
    # A publication the loop read from the bus meanwhile: fanned out before the next slices.
    asyncio.get_running_loop().call_soon(order.append, "live")
    await asyncio.gather(*slices)
    assert order == ["slice 0", "slice 1", "live", "slice 2", "slice 3", "slice 4", "slice 5"]


async def test_a_replay_that_ends_while_waiting_for_its_turn_gives_its_place_up() -> None:
    turns = ReplayTurns(per_turn=1)
    first, gone, kept = (asyncio.ensure_future(turns.take()) for _ in range(3))
    await asyncio.sleep(0)  # the turn's one slice started; two wait
    assert (first.done(), turns.waiting) == (True, 2)
    gone.cancel()
    await kept
    assert gone.cancelled()
    assert turns.waiting == 0


def test_a_turn_gives_at_least_one_slice() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReplayTurns(per_turn=0)


async def test_many_paced_replays_start_at_most_a_turns_share_of_slices_per_turn(
    worker: Worker,
) -> None:
    await publish_many(worker, HISTORY)
    clients = [await RawClient.open(worker) for _ in range(6)]
    turns = worker.hub._recovery.turns
    most = 0

    def watch() -> None:
        nonlocal most
        most = max(most, turns._used)
        if any(len(c.offsets()) < HISTORY for c in clients):
            asyncio.get_running_loop().call_soon(watch)

    try:
        for client in clients:
            subscribe_from_the_start(client)
        watch()
        await eventually(lambda: all(len(c.offsets()) >= HISTORY for c in clients), timeout_s=30)
        assert all(c.offsets() == list(range(1, HISTORY + 1)) for c in clients)
        assert 1 <= most <= 4
    finally:
        for client in clients:
            client.close()


# Memory given back


class FakeTrim:
    """Counts its calls; with *seen*, also records what *seen* () says at each call."""

    def __init__(self, seen: Callable[[], float] | None = None) -> None:
        self.calls = 0
        self.seen = seen
        self.seen_at_calls: list[float] = []

    def __call__(self, pad: int) -> int:
        self.calls += 1
        if self.seen is not None:
            self.seen_at_calls.append(self.seen())
        return 1


async def test_the_heap_is_trimmed_at_most_once_an_interval_and_a_later_request_when_it_is_up() -> (
    None
):
    trim = FakeTrim()
    heap = HeapTrim(min_interval_s=0.05, trim=trim)
    heap.request()
    assert trim.calls == 1
    heap.request()  # within the interval: when it is up, once
    heap.request()
    assert trim.calls == 1
    await eventually(lambda: trim.calls == 2)
    await eventually(lambda: heap._later is None)
    assert trim.calls == 2


async def test_the_heap_is_trimmed_after_a_replay_caught_up_while_another_runs_on(
    worker: Worker,
) -> None:
    """A client on a slow link (here: not reading at all) keeps its paced replay running;
    another client's replay that caught up still has its memory given back. Before, the trim
    waited until no paced replay ran (0 trims here)."""
    await publish_many(worker, HISTORY)
    trim = FakeTrim(lambda: metric(worker, "herald_paced_replays_total", result="caught_up"))
    worker.hub._recovery.heap_trim = HeapTrim(min_interval_s=0.05, trim=trim)
    laggard = await RawClient.open(worker)
    reader: RawClient | None = None
    try:
        server_side(worker)
        laggard.stop_reading()
        subscribe_from_the_start(laggard)
        await eventually(lambda: worker.hub._recovery.feeds == 1)
        reader = await RawClient.open(worker)
        subscribe_from_the_start(reader)
        await eventually(lambda: len(reader.offsets()) >= HISTORY, timeout_s=30)
        await eventually(
            lambda: metric(worker, "herald_paced_replays_total", result="caught_up") == 1
        )
        await eventually(lambda: 1 in trim.seen_at_calls)  # a trim after the reader's end
        assert worker.hub._recovery.feeds == 1  # while the laggard's replay runs on
    finally:
        laggard.close()
        if reader is not None:
            reader.close()


async def test_a_paced_replay_that_caught_up_trims_the_heap(worker: Worker) -> None:
    await publish_many(worker, HISTORY)
    heap = worker.hub._recovery.heap_trim
    client = await RawClient.open(worker)
    try:
        subscribe_from_the_start(client)
        await eventually(lambda: len(client.offsets()) >= HISTORY, timeout_s=30)
        await eventually(
            lambda: metric(worker, "herald_paced_replays_total", result="caught_up") == 1
        )
        assert heap.trims == 1
    finally:
        client.close()
