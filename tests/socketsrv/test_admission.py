"""Admission control (socketsrv/admission.py, docs/configuration.md ``max_handshakes``): past
``max_handshakes`` fast opens in flight an upgrade request waits its turn, unanswered and not
timed out; past ``handshake_queue`` waiting it gets 503 with Retry-After; /healthz answers
meanwhile; a waiting request is taken up, in order, as soon as a handshake in flight ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from socketsrv.admission import Admission, Verdict
from socketsrv.hub import Hub
from socketsrv.protocol.opening import open_token
from socketsrv.worker import Worker
from tests.support.raw_ws import (
    OP_TEXT,
    RawConnection,
    client_frame,
    http_get,
    raw_connection,
    upgrade_request,
)
from tests.support.waiting import eventually
from tests.support.worker import handshake_rejections, metric, running_worker

TAG = "tag:python"


class FakeTurn:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name, self.waiting = log, name, True

    def waiting_for_turn(self) -> bool:
        return self.waiting

    def take_turn(self) -> None:
        self.waiting = False
        self.log.append(self.name)

    def leave(self, adm: Admission) -> None:
        """Its client gave up while it waited."""
        self.waiting = False
        adm.withdraw()


def admission(limit: int, queue: int) -> tuple[Admission, list[Callable[[], None]]]:
    soon: list[Callable[[], None]] = []
    return Admission(limit, queue, soon.append), soon


def test_past_the_limit_requests_wait_in_order_and_past_the_queue_it_is_full() -> None:
    adm, soon = admission(limit=2, queue=2)
    log: list[str] = []
    assert [adm.enter(FakeTurn(log, n)) for n in "ab"] == [Verdict.GO, Verdict.GO]
    c, d = FakeTurn(log, "c"), FakeTurn(log, "d")
    assert adm.enter(c) is Verdict.WAIT
    assert adm.enter(d) is Verdict.WAIT
    assert adm.enter(FakeTurn(log, "e")) is Verdict.FULL
    adm.leave()
    assert log == []  # taken up on the next loop turn, not inside the one that ended
    (run,) = soon
    run()
    assert log == ["c"] and adm.in_flight == 2 and adm.queued == 1 and d.waiting


def test_a_newcomer_does_not_jump_the_queue_and_a_closed_waiter_is_skipped() -> None:
    adm, soon = admission(limit=1, queue=5)
    log: list[str] = []
    assert adm.enter(FakeTurn(log, "a")) is Verdict.GO
    gone, c = FakeTurn(log, "gone"), FakeTurn(log, "c")
    assert adm.enter(gone) is Verdict.WAIT
    assert adm.enter(c) is Verdict.WAIT
    gone.leave(adm)
    assert adm.queued == 1
    adm.leave()
    assert adm.enter(FakeTurn(log, "late")) is Verdict.WAIT  # behind c, though one is free
    soon.pop()()
    assert log == ["c"]


def test_a_client_that_leaves_is_withdrawn_and_never_taken_up() -> None:
    adm, soon = admission(limit=1, queue=3)
    log: list[str] = []
    adm.enter(FakeTurn(log, "a"))
    waiters = [FakeTurn(log, name) for name in "bcd"]
    for turn in waiters:
        adm.enter(turn)
    assert adm.enter(FakeTurn(log, "full")) is Verdict.FULL
    waiters[0].leave(adm)
    waiters[2].leave(adm)
    assert adm.queued == 1
    assert adm.enter(FakeTurn(log, "e")) is Verdict.WAIT  # a place was freed
    adm.leave()
    soon.pop()()
    assert log == ["c"]  # b was withdrawn: passed over
    adm.leave()
    soon.pop()()
    assert log == ["c", "e"] and adm.queued == 0  # d too


def test_many_withdrawn_waiters_do_not_pile_up() -> None:
    adm, _ = admission(limit=1, queue=100_000)
    adm.enter(FakeTurn([], "a"))
    waiters = [FakeTurn([], str(i)) for i in range(10_000)]
    for turn in waiters:
        adm.enter(turn)
    for turn in waiters[1:]:
        turn.leave(adm)  # the oldest stays, so nothing is passed from the front
    assert adm.queued == 1
    assert len(adm._waiting) <= 2 * adm.queued + 64 + 1


def test_draining_takes_up_every_waiter_at_once() -> None:
    adm, _ = admission(limit=1, queue=5)
    log: list[str] = []
    adm.enter(FakeTurn(log, "a"))
    for name in "bcd":
        adm.enter(FakeTurn(log, name))
    adm.admit_all()
    assert log == ["b", "c", "d"]


def test_no_limit_means_every_request_goes() -> None:
    adm, _ = admission(limit=0, queue=0)
    assert all(adm.enter(FakeTurn([], str(i))) is Verdict.GO for i in range(1000))


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    async with running_worker(max_handshakes=1, handshake_queue=1) as w:
        yield w


@pytest.fixture
def held_subscribes(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Subscribes wait for this event: a fast open stays in flight until it is set."""
    release = asyncio.Event()
    original = Hub.subscribe

    async def held(self: Hub, *args: Any, **kwargs: Any) -> None:
        await release.wait()
        await original(self, *args, **kwargs)

    monkeypatch.setattr(Hub, "subscribe", held)
    return release


def fast_request() -> bytes:
    commands = [{"op": "connect", "id": 1}, {"op": "subscribe", "id": 2, "channel": TAG}]
    return upgrade_request(subprotocol=f"herald.v1.json, {open_token(commands)}")


async def send(conn: RawConnection, data: bytes) -> None:
    conn.writer.write(data)
    await conn.writer.drain()


async def replies(conn: RawConnection) -> set[int]:
    head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 20.0)
    assert head.startswith(b"HTTP/1.1 101"), head
    ids: set[int] = set()
    while len(ids) < 2:
        _, payload = await conn.read_frame(timeout=20.0)
        message = json.loads(payload)
        if message.get("type") == "reply":
            ids.add(message["id"])
    return ids


async def take_the_only_place(worker: Worker, first: RawConnection) -> None:
    """*first*'s fast open is in flight (its subscribes held): the worker's one place."""
    await send(first, fast_request())
    await eventually(lambda: metric(worker, "herald_fast_opens_total") == 1, 20.0)


async def wait_in_queue(worker: Worker, conn: RawConnection, request: bytes) -> None:
    """*conn* sends *request*, which waits for a turn."""
    await send(conn, request)
    await eventually(lambda: metric(worker, "herald_handshakes_queued") == 1, 20.0)


async def test_a_request_past_the_limit_waits_its_turn_and_past_the_queue_gets_503(
    worker: Worker, held_subscribes: asyncio.Event
) -> None:
    async with (
        raw_connection(worker.port) as first,
        raw_connection(worker.port) as second,
        raw_connection(worker.port) as third,
    ):
        await take_the_only_place(worker, first)
        await wait_in_queue(worker, second, fast_request())
        await send(third, fast_request())
        answer = await asyncio.wait_for(third.reader.read(), 20.0)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"Retry-After: 1" in answer and b"Too many handshakes waiting" in answer
        assert handshake_rejections(worker, "busy") == 1
        health = await http_get(worker.port, "/healthz")
        assert health.status == 200  # answered while handshakes wait
        held_subscribes.set()
        assert await replies(first) == {1, 2}
        assert await replies(second) == {1, 2}
    assert metric(worker, "herald_handshakes_queued") == 0
    async with raw_connection(worker.port) as later:  # no place was leaked
        await send(later, fast_request())
        assert await replies(later) == {1, 2}


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_a_waiting_request_whose_client_leaves_is_withdrawn_at_once(
    worker: Worker, held_subscribes: asyncio.Event, how: str
) -> None:
    async with raw_connection(worker.port) as first:
        await take_the_only_place(worker, first)
        async with raw_connection(worker.port) as leaving:
            await wait_in_queue(worker, leaving, fast_request())
            if how == "abort":
                leaving.writer.transport.abort()
        # Noticed while the handshake in flight still holds the only place: no turn needed.
        await eventually(lambda: metric(worker, "herald_handshakes_queued") == 0, 20.0)
        assert metric(worker, "herald_handshakes_abandoned_total") == 1
        assert metric(worker, "herald_connections_accepted_total") == 1  # the first only
        held_subscribes.set()
        assert await replies(first) == {1, 2}
        async with raw_connection(worker.port) as later:
            await send(later, fast_request())
            assert await replies(later) == {1, 2}
    assert metric(worker, "herald_fast_opens_total") == 2  # never opened the one that left


async def test_what_a_waiting_client_sends_is_read_after_its_turn(
    worker: Worker, held_subscribes: asyncio.Event
) -> None:
    async with raw_connection(worker.port) as first, raw_connection(worker.port) as eager:
        await take_the_only_place(worker, first)
        connect = json.dumps({"op": "connect", "id": 7}).encode()
        await wait_in_queue(worker, eager, upgrade_request() + client_frame(OP_TEXT, connect))
        held_subscribes.set()
        head = await asyncio.wait_for(eager.reader.readuntil(b"\r\n\r\n"), 20.0)
        assert head.startswith(b"HTTP/1.1 101"), head
        opcode, payload = await eager.read_frame(timeout=20.0)
        assert opcode == OP_TEXT, (opcode, payload)
        reply = json.loads(payload)
        assert reply["type"] == "reply" and reply["id"] == 7, reply


async def test_a_waiting_client_that_sends_too_much_is_read_only_after_its_turn(
    worker: Worker, held_subscribes: asyncio.Event
) -> None:
    too_big = worker.settings.max_frame_bytes + 1
    async with raw_connection(worker.port) as first, raw_connection(worker.port) as flooding:
        await take_the_only_place(worker, first)
        await wait_in_queue(worker, flooding, upgrade_request())
        flooding.writer.write(client_frame(OP_TEXT, b"x" * too_big))  # not drained: held
        held_subscribes.set()
        head = await asyncio.wait_for(flooding.reader.readuntil(b"\r\n\r\n"), 20.0)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert await flooding.close_code() == 1009  # read after the 101, as any frame


async def test_a_waiting_client_that_sent_too_much_and_vanished_is_let_go_at_its_turn(
    worker: Worker, held_subscribes: asyncio.Event
) -> None:
    """Its reading is paused, so its reset goes unseen while it waits (the event loop no
    longer polls that socket); the 101 written at its turn meets the reset, and the socket,
    its place and its descriptor are let go: bounded by the wait, not leaked."""
    too_big = worker.settings.max_frame_bytes + 1
    async with raw_connection(worker.port) as first:
        await take_the_only_place(worker, first)
        async with raw_connection(worker.port) as vanishing:
            await wait_in_queue(worker, vanishing, upgrade_request())
            await send(vanishing, client_frame(OP_TEXT, b"x" * too_big))
            await eventually(lambda: worker.open_transports() == 2, 20.0)
            vanishing.writer.transport.abort()
        held_subscribes.set()
        assert await replies(first) == {1, 2}
        await eventually(lambda: worker.open_transports() == 1, 20.0)  # the first only
        assert metric(worker, "herald_handshakes_queued") == 0
        async with raw_connection(worker.port) as later:  # its place was given back
            await send(later, fast_request())
            assert await replies(later) == {1, 2}
