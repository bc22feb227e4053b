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

from bench.loadgen.adapters import OP_CLOSE
from bench.loadgen.client import Client, Slot
from bench.soak_load import SoakAdapter, SoakProcess, classify
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
    client = Client(proc, slot)
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
