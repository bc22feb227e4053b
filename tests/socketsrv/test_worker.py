"""socketsrv/worker.py with its connections and hub: one real worker on the memory bus.

Heartbeats and deadlines, tokens, private channels, slow clients, unsubscribing, draining,
write coalescing and recovery, seen from real loopback websocket clients. Tests about time
drive the worker's clock by hand (tests/support/worker.py: ManualClock) and run its sweep
themselves; the others wait on conditions, never for a duration.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import jwt
import pytest
import uvloop
from websockets.asyncio.client import connect
from websockets.http11 import Request, Response

from socketsrv.connection import ConnectionState
from socketsrv.worker import Worker, WorkerState, verifier_of
from tests.support.client import (
    HeraldTestClient,
    assert_closed_with,
    assert_offsets_exactly,
    assert_still_open,
)
from tests.support.raw_ws import (
    OP_TEXT,
    client_frame,
    get_request,
    http_get,
    raw_connection,
    read_server_frame,
    upgrade_request,
)
from tests.support.tokens import TokenIssuer
from tests.support.waiting import eventually
from tests.support.worker import (
    ManualClock,
    disconnects_counted,
    metric,
    publish,
    running_worker,
    ws_url,
)

CHANNEL = "question:4242"


# Helpers


@pytest.fixture
async def auth_worker(issuer: TokenIssuer) -> AsyncIterator[Worker]:
    async with running_worker(jwt_public_key_pem=issuer.public_pem) as w:
        yield w


async def connected(worker: Worker, **options: Any) -> HeraldTestClient:
    client = HeraldTestClient(ws_url(worker), **options)
    reply = await client.open()
    assert reply is not None and reply["type"] == "reply", reply
    return client


async def publish_many(worker: Worker, channel: str, count: int) -> None:
    """Publish *count* numbered items back to back, in one event-loop turn."""
    for n in range(count):
        await publish(worker, channel, n)


async def assert_connect_refused(worker: Worker, token: str | None, code: int) -> None:
    """A client whose connect command is answered with a close with *code*."""
    client = HeraldTestClient(ws_url(worker), token=token)
    try:
        with pytest.raises(ConnectionError):
            await client.open()
        await assert_closed_with(client, code)
    finally:
        await client.close()


def leeway_of(worker: Worker) -> float:
    """How long past ``exp`` the worker still accepts a token."""
    verifier = verifier_of(worker.settings)
    assert verifier is not None
    return verifier.leeway_s


def received(client: HeraldTestClient, channel: str) -> int:
    log = client.channels.get(channel)
    return 0 if log is None else len(log.received)


def last_offset(client: HeraldTestClient, channel: str) -> int:
    log = client.channels.get(channel)
    return 0 if log is None or not log.received else log.received[-1][1]


# Heartbeats and deadlines (time: a ManualClock, moved by the test; the sweep run by hand)


async def test_heartbeats_arrive_and_a_client_that_answers_them_stays() -> None:
    clock = ManualClock()
    async with running_worker(clock=clock) as worker:
        client = await connected(worker)
        try:
            (conn,) = worker.connections
            for beat in range(1, 4):  # longer than a heartbeat plus its pong timeout
                clock.advance(worker.settings.ping_interval_s)
                clock.sweep()
                await eventually(lambda: client.heartbeats == beat)  # noqa: B023
                await eventually(conn.session.heartbeat_due)  # the answer came back
            await assert_still_open(client)
        finally:
            await client.close()
        assert disconnects_counted(worker, 4002) == 0


async def test_a_client_that_stops_answering_heartbeats_is_closed_with_4002() -> None:
    clock = ManualClock()
    async with running_worker(clock=clock) as worker:
        client = await connected(worker)
        client.answer_heartbeats = False
        try:
            (conn,) = worker.connections
            clock.sweep()
            await eventually(lambda: client.heartbeats == 1)
            clock.advance(worker.settings.pong_timeout_s * 0.9)
            clock.sweep()
            assert conn.state is ConnectionState.OPEN  # not before its pong timeout
            clock.advance(worker.settings.pong_timeout_s * 0.2)
            clock.sweep()
            await assert_closed_with(client, 4002)
        finally:
            await client.close()
        assert disconnects_counted(worker, 4002) == 1


async def test_a_connection_that_never_sends_connect_is_closed_with_4005(worker: Worker) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open(send_connect=False)
    try:
        await assert_closed_with(client, 4005)  # by its timer, connect_timeout_s after the 101
    finally:
        await client.close()
    assert client.heartbeats == 0  # no heartbeats before connect
    assert disconnects_counted(worker, 4005) == 1


async def test_the_connect_timeout_counts_from_the_101_not_from_the_tcp_accept() -> None:
    clock = ManualClock()
    async with running_worker(clock=clock) as worker:
        timeout_s = worker.settings.connect_timeout_s
        async with raw_connection(worker.port) as slow, raw_connection(worker.port) as silent:
            request = upgrade_request()
            slow.writer.write(request[:20])  # a slow start: most of the timeout goes by
            await slow.writer.drain()
            clock.advance(timeout_s * 0.7)
            assert (await slow.read_http_head(request[20:])).status == 101
            assert (await silent.read_http_head(upgrade_request())).status == 101
            clock.advance(timeout_s * 0.6)  # 1.3 timeouts after the accept, 0.6 after the 101
            clock.sweep()
            await slow.send(client_frame(OP_TEXT, json.dumps({"id": 1, "op": "connect"}).encode()))
            opcode, payload = await slow.read_frame()
            assert (opcode, json.loads(payload)["type"]) == (OP_TEXT, "reply")

            clock.advance(timeout_s * 0.5)  # 1.1 timeouts after the 101: too late
            clock.sweep()
            assert await silent.close_code() == 4005
    assert disconnects_counted(worker, 4005) == 1


def test_a_connect_that_arrived_in_time_on_a_busy_worker_is_not_timed_out() -> None:
    """The worker stalls in the middle of reading sockets (a storm of handshakes) past the
    client's deadline; the client's connect arrives during the stall. uvloop, as in
    production, runs due timers before it polls sockets again: the timer must not win."""

    def client(port: int, stall: threading.Event) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(upgrade_request())
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            stall.wait(10)  # set inside the stall: the worker reads no socket until it ends
            sock.sendall(client_frame(OP_TEXT, json.dumps({"id": 1, "op": "connect"}).encode()))
            return read_server_frame(sock.makefile("rb").read)

    async def stalled_worker() -> None:
        async with running_worker() as worker:
            stall = threading.Event()
            serve = worker._host.http

            def stalling_http(request: Request) -> Response | None:
                if request.path == "/stall":
                    stall.set()
                    time.sleep(worker.settings.connect_timeout_s * 1.5)
                return serve(request)

            worker._host.http = stalling_http
            answer = asyncio.ensure_future(asyncio.to_thread(client, worker.port, stall))
            await eventually(lambda: len(worker._host.connections) == 1)  # the 101 went out
            async with raw_connection(worker.port) as raw:
                await raw.exchange(get_request("/stall"))
            opcode, payload = await answer
            assert (opcode, json.loads(payload)["type"]) == (OP_TEXT, "reply")
            assert disconnects_counted(worker, 4005) == 0

    uvloop.run(stalled_worker())


# Tokens


async def test_a_token_that_expires_while_connected_closes_with_4004(
    issuer: TokenIssuer,
) -> None:
    clock = ManualClock()
    async with running_worker(clock=clock, jwt_public_key_pem=issuer.public_pem) as worker:
        leeway_s = leeway_of(worker)
        client = await connected(worker, token=issuer.token("7", exp=clock.now + 60))
        try:
            clock.advance(60 + leeway_s - 1)
            clock.sweep()
            await assert_still_open(client)  # accepted until exp plus the leeway
            clock.advance(1)
            clock.sweep()
            await assert_closed_with(client, 4004)
        finally:
            await client.close()
        assert disconnects_counted(worker, 4004) == 1


async def test_a_token_refreshed_in_time_keeps_the_connection_and_its_subscriptions(
    issuer: TokenIssuer,
) -> None:
    clock = ManualClock()
    async with running_worker(clock=clock, jwt_public_key_pem=issuer.public_pem) as worker:
        client = await connected(worker, token=issuer.token("7", exp=clock.now + 60))
        try:
            await client.subscribe("user:7")
            fresh = issuer.token("7", exp=clock.now + 3600)
            answer = await client.request({"op": "refresh", "token": fresh})
            assert answer["type"] == "reply", answer
            clock.advance(60 + leeway_of(worker) + 1)  # past the first token's end
            clock.sweep()
            await assert_still_open(client)
            await publish(worker, "user:7", "still here")
            await eventually(lambda: client.data("user:7") == ["still here"])
        finally:
            await client.close()
        assert disconnects_counted(worker, 4004) == 0


async def test_an_expired_token_at_connect_closes_with_4004(
    auth_worker: Worker, issuer: TokenIssuer
) -> None:
    await assert_connect_refused(auth_worker, issuer.token("7", expires_in_s=-3600), 4004)
    assert disconnects_counted(auth_worker, 4004) == 1


INVALID_TOKENS: list[Any] = [
    pytest.param(lambda issuer: "not.a.jwt", id="garbage"),
    pytest.param(lambda issuer: TokenIssuer().token("7"), id="another-key"),
    pytest.param(lambda issuer: issuer.token("alice"), id="sub-not-a-user-id"),
    pytest.param(lambda issuer: issuer.token("007"), id="sub-with-leading-zeros"),
    pytest.param(
        lambda issuer: jwt.encode({"sub": "7", "exp": time.time() + 60}, "s" * 32), id="hs256"
    ),
    pytest.param(lambda issuer: jwt.encode({"sub": "7"}, issuer.key, "EdDSA"), id="no-exp"),
]


@pytest.mark.parametrize("make_token", INVALID_TOKENS)
async def test_an_invalid_token_closes_with_4500(
    auth_worker: Worker, issuer: TokenIssuer, make_token: Callable[[TokenIssuer], str]
) -> None:
    await assert_connect_refused(auth_worker, make_token(issuer), 4500)
    assert disconnects_counted(auth_worker, 4500) == 1


async def test_a_token_is_refused_with_4500_when_no_public_key_is_configured(
    worker: Worker, issuer: TokenIssuer
) -> None:
    await assert_connect_refused(worker, issuer.token("7"), 4500)


async def test_anonymous_connect_closes_with_4500_when_anonymous_is_not_allowed(
    issuer: TokenIssuer,
) -> None:
    async with running_worker(jwt_public_key_pem=issuer.public_pem, allow_anonymous=False) as w:
        await assert_connect_refused(w, None, 4500)
        assert disconnects_counted(w, 4500) == 1
        user = await connected(w, token=issuer.token("7"))
        await user.close()


async def test_a_user_receives_their_own_channel_and_another_user_cannot_subscribe_to_it(
    auth_worker: Worker, issuer: TokenIssuer
) -> None:
    owner = await connected(auth_worker, token=issuer.token("7"))
    other = await connected(auth_worker, token=issuer.token("8"))
    try:
        assert (await owner.subscribe("user:7"))["type"] == "reply"
        refused = await other.subscribe("user:7")
        assert (refused["type"], refused["code"]) == ("error", 403)

        await publish(auth_worker, "user:7", {"unread": 3})
        await eventually(lambda: received(owner, "user:7") == 1)
        await assert_still_open(other)
    finally:
        await owner.close()
        await other.close()
    assert owner.data("user:7") == [{"unread": 3}]
    assert received(other, "user:7") == 0


# Slow clients


async def test_a_slow_client_is_closed_with_4001_while_a_fast_one_gets_everything() -> None:
    # Heartbeats off: a client that reads nothing would otherwise be closed with 4002 first.
    async with running_worker(
        outbox_max_bytes=64 * 1024, ping_interval_s=60.0, pong_timeout_s=60.0
    ) as worker:
        fast, slow = await connected(worker), await connected(worker)
        try:
            await fast.subscribe(CHANNEL)
            await slow.subscribe(CHANNEL)
            assert slow.ws is not None
            slow.ws.transport.pause_reading()

            sent, pad = 0, "x" * 1000
            while disconnects_counted(worker, 4001) == 0 and sent < 50_000:
                for _ in range(16):  # 16 KiB per loop turn: well within the fast one's outbox
                    sent = await publish(worker, CHANNEL, {"n": sent + 1, "pad": pad})
                await asyncio.sleep(0)

            await eventually(lambda: received(fast, CHANNEL) == sent)
            assert_offsets_exactly(fast, CHANNEL, range(1, sent + 1))
            assert disconnects_counted(worker, 4001) == 1
            await assert_still_open(fast)
        finally:
            await fast.close()
            await slow.abort()
        assert received(slow, CHANNEL) < sent


# Unsubscribing


async def test_unsubscribe_stops_delivery_and_the_bus_channel_goes_after_the_grace_period(
    worker: Worker,
) -> None:
    client = await connected(worker)
    try:
        await client.subscribe(CHANNEL)
        await publish(worker, CHANNEL, "before")
        await eventually(lambda: received(client, CHANNEL) == 1)

        reply = await client.request({"op": "unsubscribe", "channel": CHANNEL})
        assert reply["type"] == "reply"
        assert worker.hub.channel_state(CHANNEL) is not None  # kept for the grace period
        await publish(worker, CHANNEL, "after")
        await assert_still_open(client)  # a pub would have come before this reply

        await eventually(lambda: worker.hub.channel_state(CHANNEL) is None)
    finally:
        await client.close()
    assert client.data(CHANNEL) == ["before"]
    assert metric(worker, "herald_channels_subscribed") == 0


# Draining


async def test_drain_closes_every_client_with_4000_and_a_retry_hint() -> None:
    async with running_worker(drain_batch_size=1, drain_batch_interval_s=0.2) as worker:
        url = ws_url(worker)
        clients = [await connected(worker), await connected(worker, msgpack_wire=True)]
        try:
            draining = asyncio.ensure_future(worker.drain())
            await eventually(lambda: worker.state is WorkerState.DRAINING)
            assert not worker.is_ready()
            with pytest.raises(ConnectionRefusedError):
                async with connect(url, open_timeout=2):
                    pass
            await draining
            reasons = [await assert_closed_with(client, 4000) for client in clients]
        finally:
            for client in clients:
                await client.close()
        assert all(re.fullmatch(r"restart retry_ms=\d+", reason or "") for reason in reasons)
        assert disconnects_counted(worker, 4000) == 2
        assert worker.state is WorkerState.STOPPED


async def test_during_the_drain_grace_readyz_is_503_and_new_clients_still_connect() -> None:
    # A grace far longer than the test: it ends only when the test ends it (a second SIGTERM).
    async with running_worker(drain_grace_s=3600.0) as worker:
        url = ws_url(worker)
        before = await connected(worker)
        late: HeraldTestClient | None = None
        try:
            draining = asyncio.ensure_future(worker.drain())
            await eventually(lambda: worker.state is WorkerState.LEAVING)
            ready = await http_get(worker.port, "/readyz")
            late = await connected(worker)  # the listener still accepts
            await late.subscribe(CHANNEL)
            await publish(worker, CHANNEL, "during the grace")
            await eventually(lambda: late is not None and received(late, CHANNEL) == 1)
            await assert_still_open(before)

            worker.end_grace()
            await eventually(lambda: worker.state is not WorkerState.LEAVING)
            with pytest.raises(ConnectionRefusedError):  # the listener is closed
                async with connect(url, open_timeout=2):
                    pass
            await draining
            codes = [await assert_closed_with(client, 4000) for client in (before, late)]
        finally:
            for client in (before, late):
                if client is not None:
                    await client.close()
        assert ready.status == 503
        assert all(re.fullmatch(r"restart retry_ms=\d+", reason or "") for reason in codes)
        assert worker.state is WorkerState.STOPPED


async def test_without_a_drain_grace_the_drain_stops_accepting_at_once() -> None:
    async with running_worker() as worker:  # drain_grace_s defaults to 0
        assert worker.settings.drain_grace_s == 0
        client = await connected(worker)
        try:
            draining = asyncio.ensure_future(worker.drain())
            await asyncio.sleep(0)  # the drain's first step runs without waiting
            assert worker.state is WorkerState.DRAINING
            await draining
            await assert_closed_with(client, 4000)
        finally:
            await client.close()


# Write coalescing


class WriteRecorder:
    """A transport that records each write before passing it on."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_frames_queued_in_one_loop_turn_go_out_in_one_write() -> None:
    async with running_worker(ping_interval_s=60.0, pong_timeout_s=60.0) as worker:
        client = await connected(worker)
        try:
            await client.subscribe(CHANNEL)
            (conn,) = worker.connections
            assert conn.transport is not None
            recorder = WriteRecorder(conn.transport)
            conn.transport = cast(asyncio.Transport, recorder)

            await publish_many(worker, CHANNEL, 10)
            await eventually(lambda: received(client, CHANNEL) == 10)
            writes = list(recorder.writes)
        finally:
            await client.close()
        assert client.data(CHANNEL) == list(range(10))
        assert len(writes) == 1, writes
        assert writes[0].count(b'"type":"pub"') == 10


# Recovery


@pytest.mark.parametrize(
    "channel_dropped",
    [
        pytest.param(False, id="back-within-the-grace-period"),
        pytest.param(True, id="back-after-the-worker-dropped-the-channel"),
    ],
)
async def test_a_client_that_reconnects_with_since_gets_exactly_the_missed_ones(
    worker: Worker, channel_dropped: bool
) -> None:
    client = await connected(worker)
    try:
        await client.subscribe(CHANNEL)
        await publish_many(worker, CHANNEL, 3)
        await eventually(lambda: received(client, CHANNEL) == 3)
        await client.abort()
        if channel_dropped:
            await eventually(lambda: worker.hub.channel_state(CHANNEL) is None)

        await publish_many(worker, CHANNEL, 4)
        await client.reconnect()
        await eventually(lambda: received(client, CHANNEL) == 7)
        await publish(worker, CHANNEL, "live")
        await eventually(lambda: received(client, CHANNEL) == 8)
        await assert_still_open(client)
    finally:
        await client.close()
    assert_offsets_exactly(client, CHANNEL, range(1, 9))
    assert client.data(CHANNEL) == [0, 1, 2, 0, 1, 2, 3, "live"]
    assert client.channels[CHANNEL].recoveries == ["none", "recovered"]
    assert metric(worker, "herald_recoveries_total", result="recovered") == 1


async def test_recovery_beyond_the_history_window_fails_and_continues_from_the_top() -> None:
    async with running_worker(history_size=5) as worker:
        client = await connected(worker)
        try:
            await client.subscribe(CHANNEL)
            await publish(worker, CHANNEL, "seen")
            await eventually(lambda: received(client, CHANNEL) == 1)
            await client.abort()

            await publish_many(worker, CHANNEL, 10)
            await client.reconnect()
            await publish(worker, CHANNEL, "live")
            await eventually(lambda: received(client, CHANNEL) == 2)
            await assert_still_open(client)
        finally:
            await client.close()
        assert client.channels[CHANNEL].recoveries == ["none", "failed"]
        assert_offsets_exactly(client, CHANNEL, [1, 12])
        assert metric(worker, "herald_recoveries_total", result="failed") == 1


async def test_recovery_from_another_epoch_fails_and_names_the_current_one(
    worker: Worker,
) -> None:
    client = await connected(worker)
    try:
        await publish_many(worker, CHANNEL, 3)
        since = {"epoch": "not-the-epoch", "offset": 1}
        reply = await client.request({"op": "subscribe", "channel": CHANNEL, "since": since})
        await publish(worker, CHANNEL, "live")
        await eventually(lambda: received(client, CHANNEL) == 1)
    finally:
        await client.close()
    result = reply["result"]
    assert result["recovery"] == "failed"
    assert result["epoch"] != "not-the-epoch"
    assert result["offset"] == 3
    assert client.offsets(CHANNEL) == [4]


class SteadyPublisher:
    """Publishes on one channel about every millisecond until stopped; :attr:`last` is the
    last offset so far (a pace, not a wait: tests wait on offsets)."""

    def __init__(self, worker: Worker, channel: str) -> None:
        self.last = 0
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(worker, channel))

    async def _run(self, worker: Worker, channel: str) -> None:
        while not self._stop.is_set():
            self.last = await publish(worker, channel, self.last + 1)
            await asyncio.sleep(0.001)

    async def stop(self) -> int:
        """Stop; the last offset published."""
        self._stop.set()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.last


async def test_a_recovering_subscribe_during_a_stream_of_publications_has_no_gap_or_duplicate(
    worker: Worker,
) -> None:
    for attempt in range(20):
        channel = f"question:{attempt + 1}"
        client = await connected(worker)
        await client.subscribe(channel)
        publisher = SteadyPublisher(worker, channel)
        try:
            await eventually(lambda: received(client, channel) >= 3)  # noqa: B023
            await client.abort()
            gone_at = last_offset(client, channel)
            await eventually(lambda: publisher.last >= gone_at + 3)  # noqa: B023 - missed some
            await client.reconnect()
            resumed_at = last_offset(client, channel)
            await eventually(lambda: last_offset(client, channel) >= resumed_at + 5)  # noqa: B023
            top = await publisher.stop()
            await eventually(lambda: last_offset(client, channel) == top)  # noqa: B023
        finally:
            await publisher.stop()
            await client.close()
        assert client.channels[channel].recoveries == ["none", "recovered"], attempt
        assert_offsets_exactly(client, channel, range(1, top + 1))
