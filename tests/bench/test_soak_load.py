"""The soak's load side keeps every client's accounting honest: a subscribe the fleet refused
with a code that asks for a retry is sent again on the open connection after a backoff, and a
client closed with a ``retry_ms`` hint is not reconnected before the hint has passed
(docs/protocol.md#reconnecting, #error-codes). No sockets: a client on a fake transport.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import cast

import pytest

from bench.loadgen import connecting
from bench.loadgen.adapters import OP_CLOSE
from bench.loadgen.client import Slot
from bench.soak_load import (
    SoakAdapter,
    SoakClient,
    SoakConnectRound,
    SoakProcess,
    classify,
    is_behind,
)
from tests.bench.test_loadgen_frames import RESPONSE, FakeTransport, reply, server_frame, unmask

CHANNELS = ["question:1", "questions:new"]
FAR_FUTURE = 1e12


def error(request_id: int, code: int) -> bytes:
    return json.dumps({"type": "error", "id": request_id, "code": code, "message": "x"}).encode()


def soak_client() -> tuple[SoakProcess, SoakAdapter, Slot, FakeTransport]:
    proc = SoakProcess(0, ["127.0.0.2"], ["127.1.0.1"])
    adapter = SoakAdapter()
    proc.cmd_adapter(adapter, "127.0.0.1", 1)
    slot = Slot(list(CHANNELS), probe=False)
    proc.slots.append(slot)
    client = SoakClient(proc, slot)
    slot.conn = client
    transport = FakeTransport()
    client.connection_made(cast(asyncio.BaseTransport, transport))
    client.data_received(RESPONSE)
    return proc, adapter, slot, transport


def sent_subscribes(transport: FakeTransport) -> list[dict[str, object]]:
    frames = [data for data in transport.written if not data.startswith(b"GET ")]
    messages = [json.loads(unmask(frame)[1]) for frame in frames]
    return [m for m in messages if m.get("op") == "subscribe"]


def test_a_subscribe_refused_503_is_sent_again_with_its_position_and_the_client_gets_ready() -> (
    None
):
    proc, adapter, slot, transport = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, reply(2, "e1", 40, "none")))
    slot.conn.data_received(server_frame(1, error(3, 503)))
    assert not slot.ready
    assert adapter.subscribe_refusals == 1
    assert proc.resubscribe_due(now=0.0) == 0  # not before its backoff

    transport.written.clear()
    assert proc.resubscribe_due(now=FAR_FUTURE) == 1
    assert sent_subscribes(transport) == [{"op": "subscribe", "id": 3, "channel": CHANNELS[1]}]
    assert proc.resubscribe_due(now=FAR_FUTURE) == 0  # sent once per refusal

    slot.conn.data_received(server_frame(1, reply(3, "e2", 7, "none")))
    assert proc.ready_count == 1
    accounting = classify(proc.slots, adapter, {CHANNELS[0]: ("e1", 40), CHANNELS[1]: ("e2", 7)})
    assert accounting["complete"] == 2
    assert accounting["silent_loss"] == 0


def test_a_refused_resubscribe_recovers_from_the_position_the_client_holds() -> None:
    proc, _, slot, transport = soak_client()
    assert slot.conn is not None
    slot.state.positions[CHANNELS[0]] = ("e1", 12)
    slot.conn.data_received(server_frame(1, error(2, 429)))
    transport.written.clear()
    proc.resubscribe_due(now=FAR_FUTURE)
    (sub,) = sent_subscribes(transport)
    assert sub["since"] == {"epoch": "e1", "offset": 12}


def test_a_refusal_that_asks_for_no_retry_is_not_sent_again() -> None:
    proc, adapter, slot, transport = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, error(2, 403)))
    transport.written.clear()
    assert proc.resubscribe_due(now=FAR_FUTURE) == 0
    assert adapter.subscribe_refusals == 0


def test_a_client_closed_with_a_hint_reconnects_only_after_it_and_forgets_its_refusals() -> None:
    proc, adapter, slot, _ = soak_client()
    client = slot.conn
    assert client is not None
    client.data_received(server_frame(1, error(2, 503)))
    reason = b"rebalance retry_ms=3000"
    client.data_received(server_frame(OP_CLOSE, (4007).to_bytes(2, "big") + reason))
    before = time.monotonic()
    client.connection_lost(None)

    assert proc.hinted == 1
    assert not proc.may_reconnect(slot, before)
    assert proc.may_reconnect(slot, time.monotonic() + 3.01)
    assert adapter.refused == {}  # the reconnect subscribes to every channel again


def test_a_close_without_a_hint_reconnects_at_once() -> None:
    proc, _, slot, _ = soak_client()
    client = slot.conn
    assert client is not None
    client.data_received(server_frame(OP_CLOSE, (4002).to_bytes(2, "big") + b"heartbeat"))
    client.connection_lost(None)
    assert proc.hinted == 0
    assert proc.may_reconnect(slot, time.monotonic())


def test_the_accounting_says_where_a_client_that_is_not_ready_is_stuck() -> None:
    proc, adapter, slot, _ = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, reply(2, "e1", 40, "none")))
    assert classify(proc.slots, adapter, {})["not_ready_awaiting_reply"] == 1
    slot.conn.data_received(server_frame(1, error(3, 503)))
    assert classify(proc.slots, adapter, {})["not_ready_retrying_subscribe"] == 1
    slot.conn.connection_lost(None)
    accounting = classify(proc.slots, adapter, {})
    assert accounting["not_ready_no_connection"] == accounting["clients_not_ready"] == 1


def detail_of(proc: SoakProcess, tops: dict[str, tuple[str, int]]) -> dict[str, object]:
    (detail,) = proc.cmd_account(tops)["not_ready_clients"]
    return detail


def test_a_client_closed_with_a_hint_is_reported_with_its_close_its_wait_and_what_it_misses() -> (
    None
):
    proc, _, slot, _ = soak_client()
    client = slot.conn
    assert client is not None
    client.data_received(server_frame(1, reply(2, "e1", 40, "none")))
    client.data_received(server_frame(1, reply(3, "e1", 7, "none")))
    assert slot.ready
    client.data_received(
        server_frame(OP_CLOSE, (4003).to_bytes(2, "big") + b"state lost retry_ms=60000")
    )
    client.connection_lost(None)

    tops = {CHANNELS[0]: ("e2", 40), CHANNELS[1]: ("e1", 9)}
    detail = detail_of(proc, tops)
    assert detail["state"] == "no_connection"
    assert detail["ever_ready"] is True
    history = cast(dict[str, object], detail["history"])
    assert history["losses"] == 1
    assert history["last_close_code"] == 4003
    assert history["last_close_reason"] == "state lost retry_ms=60000"
    assert 0 < cast(float, detail["waits_for_hint_s"]) <= 60.0
    channels = cast(list[dict[str, object]], detail["channels"])
    assert [c["behind"] for c in channels] == [False, True]
    assert channels[1]["missing"] == 2
    assert detail["silent_channels"] == [CHANNELS[1]]


def test_a_client_whose_subscribe_is_unanswered_is_reported_with_that_subscribe_pending() -> None:
    proc, _, slot, _ = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, reply(2, "e1", 40, "none")))
    detail = detail_of(proc, {CHANNELS[0]: ("e1", 40)})
    assert detail["state"] == "awaiting_reply"
    channels = cast(list[dict[str, object]], detail["channels"])
    assert [c["subscribe"] for c in channels] == ["answered", "pending"]
    connection = cast(dict[str, object], detail["connection"])
    assert connection["upgraded"] is True and connection["lost"] is False
    assert cast(float, connection["upgraded_s_ago"]) >= 0


def test_a_refusal_that_asks_for_no_retry_is_reported_as_refused_with_its_code() -> None:
    proc, _, slot, _ = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, reply(2, "e1", 40, "none")))
    slot.conn.data_received(server_frame(1, error(3, 403)))
    detail = detail_of(proc, {})
    assert detail["state"] == "refused"
    channels = cast(list[dict[str, object]], detail["channels"])
    assert channels[1]["subscribe"] == "refused 403"


def test_a_refused_subscribe_sent_again_is_pending_until_its_answer() -> None:
    proc, _, slot, _ = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, reply(2, "e1", 40, "none")))
    slot.conn.data_received(server_frame(1, error(3, 503)))
    channels = cast(list[dict[str, object]], detail_of(proc, {})["channels"])
    assert str(channels[1]["subscribe"]).startswith("refused, due in")
    proc.resubscribe_due(now=FAR_FUTURE)
    channels = cast(list[dict[str, object]], detail_of(proc, {})["channels"])
    assert channels[1]["subscribe"] == "pending"


def test_a_position_is_behind_by_its_offset_whatever_its_epoch() -> None:
    # The soak's Redis restart keeps the streams: offsets go on in the new epoch, and a
    # client that subscribed since holds the top's offset under the new epoch.
    assert not is_behind(("e2", 3), ("e1", 3))
    assert is_behind(("e1", 2), ("e2", 3))
    assert not is_behind(("-", 0), ("e2", 0))
    assert is_behind(None, ("e2", 1))
    assert not is_behind(None, None)


def test_a_ready_client_behind_after_a_failed_recovery_is_counted_failed_then_short() -> None:
    proc, _, slot, _ = soak_client()
    assert slot.conn is not None
    slot.conn.data_received(server_frame(1, reply(2, "e2", 40, "failed")))
    slot.conn.data_received(server_frame(1, reply(3, "e2", 7, "none")))
    assert slot.ready
    accounting = proc.cmd_account({CHANNELS[0]: ("e2", 41), CHANNELS[1]: ("e2", 7)})
    assert accounting["failed_explicit"] == accounting["failed_then_short"] == 1
    (sample,) = accounting["failed_then_short_samples"]
    assert sample["position"] == ["e2", 40] and sample["top"] == ["e2", 41]
    assert cast(list[object], sample["last_reply"])[:3] == ["failed", "e2", 40]


def test_a_reconnect_cancelled_at_the_rounds_deadline_before_it_connected_is_reconnected_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def connect_never(*_: object) -> None:
        await asyncio.Event().wait()  # a SYN nobody answers

    monkeypatch.setattr(connecting, "connect", connect_never)

    async def scenario() -> tuple[SoakProcess, Slot]:
        proc = SoakProcess(0, ["127.0.0.2"], ["127.1.0.1"])
        proc.cmd_adapter(SoakAdapter(), "127.0.0.1", 1)
        slot = Slot(list(CHANNELS), probe=False)
        proc.slots.append(slot)
        deadline = time.monotonic() + 1e6
        round_ = SoakConnectRound(
            proc, "127.0.0.1", 1, [slot], concurrency=1, deadline=deadline, retry=True
        )
        task = asyncio.ensure_future(round_._one(slot, "127.0.0.2"))
        while slot.conn is None:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()  # what ConnectRound.run does to the connects in flight at its deadline
        await asyncio.gather(task, return_exceptions=True)
        return proc, slot

    proc, slot = asyncio.run(scenario())
    assert slot.conn is not None and slot.conn.transport is None
    assert proc.may_reconnect(slot, time.monotonic())
    assert proc.histories[id(slot)].last_connect_error == "cancelled"
