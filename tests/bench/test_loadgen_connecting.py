"""A connect round never leaves a client stuck: a connect cancelled at the deadline before
it had a socket is marked lost, and in the reconnect storm a connection not ready in time,
its TCP connect included, is aborted and tries again (client-js's connect timeout). Fake
transports, but for the connect itself: a connection whose making is cancelled is closed
once made (bench/loadgen/client.py: connect)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any, cast

import pytest

from bench.loadgen import client as client_module
from bench.loadgen import connecting
from bench.loadgen.client import Client, Slot
from bench.loadgen.connecting import ConnectRound
from bench.loadgen.herald import HeraldAdapter
from bench.loadgen.process import LoadProcess
from tests.bench.test_loadgen_frames import RESPONSE, FakeTransport

FAR_FUTURE_S = 1e6


def load_process() -> LoadProcess:
    proc = LoadProcess(0, ["127.0.0.2"], ["127.1.0.1"])
    proc.cmd_adapter(HeraldAdapter(), "127.0.0.1", 1)
    return proc


def storm_round(proc: LoadProcess, slot: Slot, **options: float) -> ConnectRound:
    """A reconnect storm of *slot* alone, with retries."""
    proc.slots.append(slot)
    deadline = time.monotonic() + FAR_FUTURE_S
    return ConnectRound(
        proc, "127.0.0.1", 1, [slot], concurrency=1, deadline=deadline, retry=True, **options
    )


def storm_of_one(proc: LoadProcess, slot: Slot) -> int:
    """:func:`storm_round` with a 10 ms connect timeout, run to its end."""
    return asyncio.run(storm_round(proc, slot, ready_timeout_s=0.01).run())


class DeafThenAnswering:
    """A fake ``connect``: the first connection never hears back; later ones get a 101."""

    def __init__(self) -> None:
        self.transports: list[FakeTransport] = []

    async def __call__(
        self, _loop: object, protocol: asyncio.Protocol, _h: str, _p: int, _s: str, _t: float
    ) -> None:
        client = cast(Client, protocol)
        transport = AbortingTransport(client)
        self.transports.append(transport)
        client.connection_made(cast(asyncio.Transport, transport))
        if len(self.transports) > 1:
            asyncio.get_running_loop().call_soon(client.data_received, RESPONSE)


class AbortingTransport(FakeTransport):
    """Aborting it loses the connection, as a real transport's abort does."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def abort(self) -> None:
        if not self.aborted:
            super().abort()
            asyncio.get_running_loop().call_soon(self.client.connection_lost, None)


def test_a_storm_connection_not_ready_in_time_is_aborted_and_tries_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = DeafThenAnswering()
    monkeypatch.setattr(connecting, "connect", fake)
    proc, slot = load_process(), Slot([], probe=False)  # no channels: ready at the 101
    assert storm_of_one(proc, slot) == 1
    assert slot.ready
    assert len(fake.transports) == 2
    assert fake.transports[0].aborted and not fake.transports[1].aborted
    assert proc.connect_failures["not_ready_in_time"] == 1
    assert proc.retries == 1
    assert proc.lost_unexpectedly == 0  # the client's own decision, not a loss


class SynDroppedThenAnswering:
    """A fake ``connect``: the first TCP connect never completes (its SYN dropped by a full
    listen queue and retransmitted for minutes); later ones connect and get a 101."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(
        self, _loop: object, protocol: asyncio.Protocol, _h: str, _p: int, _s: str, timeout_s: float
    ) -> None:
        self.calls += 1
        if self.calls == 1:
            async with asyncio.timeout(timeout_s):  # as the real connect bounds its TCP connect
                await asyncio.Event().wait()
        client = cast(Client, protocol)
        client.connection_made(cast(asyncio.Transport, AbortingTransport(client)))
        asyncio.get_running_loop().call_soon(client.data_received, RESPONSE)


def test_a_storm_tcp_connect_not_done_in_time_is_given_up_and_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = SynDroppedThenAnswering()
    monkeypatch.setattr(connecting, "connect", fake)
    proc, slot = load_process(), Slot([], probe=False)
    # client-js's connect timeout runs from the socket's creation: the stuck connect counts.
    assert storm_of_one(proc, slot) == 1
    assert slot.ready
    assert fake.calls == 2
    assert proc.connect_failures == {"not_ready_in_time": 1}
    assert proc.retries == 1


def test_a_connect_cancelled_before_it_had_a_socket_is_marked_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def connect_never(*_: object) -> None:
        await asyncio.Event().wait()  # a SYN nobody answers

    monkeypatch.setattr(connecting, "connect", connect_never)
    proc = load_process()
    slot = Slot(["tag:x"], probe=False)

    async def cancelled() -> None:
        round_ = storm_round(proc, slot)
        task = asyncio.ensure_future(round_._one(slot, "127.0.0.2"))
        while slot.conn is None:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()  # what ConnectRound.run does to the connects in flight at its deadline
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(cancelled())
    assert slot.conn is not None and slot.conn.transport is None
    assert slot.conn.lost
    assert proc.connect_failures["cancelled"] == 1


def test_a_first_open_with_retry_tries_a_deaf_connection_again_and_counts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = DeafThenAnswering()
    monkeypatch.setattr(connecting, "connect", fake)
    proc = load_process()
    proc.ready_timeout_s = 0.01

    async def open_one() -> dict[str, object]:
        reply = await proc.cmd_open(
            "127.0.0.1", 1, [[]], probe_every=0, concurrency=1, timeout_s=FAR_FUTURE_S,
            retry=True,
        )  # fmt: skip
        return dict(reply)

    reply = asyncio.run(open_one())
    assert reply["opened"] == 1
    assert reply["retries"] == 1
    assert len(fake.transports) == 2


def test_a_first_open_without_retry_leaves_a_deaf_connection_unopened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = DeafThenAnswering()
    monkeypatch.setattr(connecting, "connect", fake)
    proc = load_process()

    async def open_one() -> dict[str, object]:
        reply = await proc.cmd_open(
            "127.0.0.1", 1, [[]], probe_every=0, concurrency=1, timeout_s=0.05
        )
        return dict(reply)

    reply = asyncio.run(open_one())
    assert reply["opened"] == 0
    assert reply["retries"] == 0
    assert len(fake.transports) == 1


class HeardLost(Client):
    """A client that tells when it hears connection_lost."""

    __slots__ = ("heard",)

    def __init__(self, proc: LoadProcess, slot: Slot) -> None:
        super().__init__(proc, slot)
        self.heard = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.heard.done():
            self.heard.set_result(None)


def test_a_connection_whose_making_is_cancelled_is_aborted_once_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvloop would close such a transport without telling the protocol: here the client
    hears connection_lost, as its own decision (not an unexpected loss)."""

    async def scenario(listening: socket.socket) -> HeardLost:
        loop = asyncio.get_running_loop()
        go = asyncio.Event()
        create = loop.create_connection

        async def held_create(*args: Any, **kwargs: Any) -> Any:
            await go.wait()
            return await create(*args, **kwargs)

        monkeypatch.setattr(loop, "create_connection", held_create)
        proc = load_process()
        client = HeardLost(proc, Slot(["tag:x"], probe=False))
        port = listening.getsockname()[1]
        task = asyncio.ensure_future(
            client_module.connect(loop, client, "127.0.0.1", port, "127.0.0.1", 5.0)
        )
        accepted = None
        while accepted is None:  # the TCP connect is done: the making waits on *go*
            try:
                accepted, _ = listening.accept()
            except BlockingIOError:
                await asyncio.sleep(0.01)
        with accepted:
            task.cancel()
            go.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.wait_for(client.heard, 5.0)
        assert proc.lost_unexpectedly == 0
        return client

    with socket.create_server(("127.0.0.1", 0)) as listening:
        listening.setblocking(False)
        client = asyncio.run(scenario(listening))
    assert client.transport is None and client.lost  # it was made, then closed...
    assert client.closing  # ...by its caller's decision
