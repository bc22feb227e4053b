"""The load generator's websocket client: handshake, frame parsing across reads, masking,
and the Herald adapter's accounting of positions, gaps and duplicates. No sockets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from bench.loadgen.adapters import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ClientState,
    Message,
    Positions,
)
from bench.loadgen.client import Client, Slot
from bench.loadgen.herald import HeraldAdapter
from bench.loadgen.process import LoadProcess


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one masked client frame."""
    assert frame[1] & 0x80, "client frames are masked"
    n, start = frame[1] & 0x7F, 2
    if n == 126:
        n, start = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, start = int.from_bytes(frame[2:10], "big"), 10
    key, body = frame[start : start + 4], frame[start + 4 : start + 4 + n]
    assert len(body) == n
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


class Recorder:
    """An adapter that records what it is given."""

    name = "recorder"

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []

    def upgrade_request(self, host: str, port: int) -> bytes:
        return b"GET / HTTP/1.1\r\n\r\n"

    def open_messages(self, channels: Sequence[str], positions: Positions | None) -> list[Message]:
        return [(OP_TEXT, b"hello")]

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        self.messages.append((opcode, payload))
        return []


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def connected(adapter: Any, channels: Sequence[str] = ("tag:x",)) -> tuple[Client, FakeTransport]:
    proc = LoadProcess(0, ["127.0.0.2"], ["127.1.0.1"])
    proc.adapter = adapter
    proc.upgrade = adapter.upgrade_request("127.0.0.1", 1)
    slot = Slot(list(channels), probe=False)
    client = Client(proc, slot)
    slot.conn = client
    transport = FakeTransport()
    client.connection_made(transport)
    return client, transport


RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_frames_split_anywhere_and_packed_together_are_parsed_whole(chunk: int) -> None:
    recorder = Recorder()
    client, transport = connected(recorder)
    payloads = [b"a", b"x" * 125, b"y" * 126, b"z" * 70000, b"{}"]
    stream = RESPONSE + b"".join(server_frame(OP_TEXT, p) for p in payloads)
    stream += server_frame(OP_TEXT, b"frag-", fin=False) + server_frame(0x0, b"ment")
    for i in range(0, len(stream), chunk):
        client.data_received(stream[i : i + chunk])
    assert recorder.messages == [(OP_TEXT, p) for p in [*payloads, b"frag-ment"]]
    assert client.proc.messages == len(payloads)  # the fragmented one is counted apart
    assert unmask(transport.written[1]) == (OP_TEXT, b"hello")


def test_a_refused_handshake_is_counted_by_status_and_aborted() -> None:
    client, transport = connected(Recorder())
    client.data_received(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    assert client.proc.handshake_failures == {"503": 1}
    assert transport.aborted


def test_ping_is_answered_and_close_is_echoed_and_counted() -> None:
    client, transport = connected(Recorder())
    client.data_received(RESPONSE + server_frame(OP_PING, b"p"))
    assert unmask(transport.written[-1]) == (OP_PONG, b"p")
    client.data_received(server_frame(OP_CLOSE, (4001).to_bytes(2, "big") + b"slow"))
    assert client.proc.closes == {4001: 1}
    assert unmask(transport.written[-1]) == (OP_CLOSE, (4001).to_bytes(2, "big"))


def pub(channel: str, offset: int, ts: float | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "pub", "channel": channel, "offset": offset, "data": {}}
    if ts is not None:
        frame["data"] = {"ts": ts, "n": 1}
    return json.dumps(frame, separators=(",", ":")).encode()


def reply(request_id: int, epoch: str, offset: int, recovery: str) -> bytes:
    result = {"epoch": epoch, "offset": offset, "recovery": recovery}
    return json.dumps({"type": "reply", "id": request_id, "result": result}).encode()


def test_herald_adapter_counts_in_order_gaps_and_duplicates_per_channel() -> None:
    adapter = HeraldAdapter()
    state = ClientState(channels=["question:1", "user:7"])
    adapter.on_message(state, OP_TEXT, reply(2, "e1", 10, "none"), False)
    adapter.on_message(state, OP_TEXT, reply(3, "e2", 0, "none"), False)
    assert state.subscribed == 2 and state.ready
    for frame in (pub("question:1", 11), pub("user:7", 1), pub("question:1", 11),
                  pub("question:1", 14), pub("user:7", 2)):  # fmt: skip
        adapter.on_message(state, OP_TEXT, frame, False)
    assert state.publications == 5
    assert state.duplicates == 1
    assert state.gaps == 2  # offsets 12 and 13 of question:1 never came
    assert state.positions == {"question:1": ("e1", 14), "user:7": ("e2", 2)}


def test_herald_adapter_recovers_from_its_positions_and_probes_measure_latency() -> None:
    adapter = HeraldAdapter()
    opened = adapter.open_messages(["question:1"], {"question:1": ("e1", 14)})
    subscribe = json.loads(opened[1][1])
    assert subscribe["since"] == {"epoch": "e1", "offset": 14}
    state = ClientState(channels=["question:1"], positions={"question:1": ("e1", 14)})
    adapter.on_message(state, OP_TEXT, reply(2, "e1", 20, "recovered"), False)
    assert state.recovered == 1
    assert state.positions["question:1"] == ("e1", 14)  # the replay follows the reply
    adapter.on_message(state, OP_TEXT, pub("question:1", 15, ts=0.0), True)
    assert state.latencies_ms and state.latencies_ms[0] > 0
    assert state.positions["question:1"] == ("e1", 15)
    assert adapter.on_message(state, OP_TEXT, b'{"type":"hb"}', False) == [
        (OP_TEXT, b'{"op":"pong"}')
    ]


def test_herald_adapter_signs_a_token_only_for_user_channels() -> None:
    from bench.loadgen.herald import EdDSATokens

    adapter = HeraldAdapter(EdDSATokens())
    with_user = json.loads(adapter.open_messages(["question:1", "user:42"], None)[0][1])
    anonymous = json.loads(adapter.open_messages(["question:1"], None)[0][1])
    assert "token" in with_user and "token" not in anonymous
    claims = with_user["token"].split(".")[1]
    import base64

    assert json.loads(base64.urlsafe_b64decode(claims + "=="))["sub"] == "42"


def test_a_fast_opening_herald_connection_carries_its_commands_in_the_upgrade_request() -> None:
    from socketsrv.protocol.opening import open_commands

    proc = LoadProcess(0, ["127.0.0.2"], ["127.1.0.1"])
    proc.cmd_adapter(HeraldAdapter(), "127.0.0.1", 1)
    slot = Slot(["tag:x", "question:1"], probe=False)
    slot.state.positions["tag:x"] = ("e1", 4)
    client = Client(proc, slot)
    slot.conn = client
    transport = FakeTransport()
    client.connection_made(transport)
    (request,) = transport.written
    offered = next(
        line.split(":", 1)[1] for line in request.decode().split("\r\n")
        if line.startswith("Sec-WebSocket-Protocol:")
    )  # fmt: skip
    commands = open_commands([s.strip() for s in offered.split(",")])
    assert commands is not None
    assert [json.loads(c) for c in commands] == [
        {"op": "connect", "id": 1},
        {"op": "subscribe", "id": 2, "channel": "tag:x", "since": {"epoch": "e1", "offset": 4}},
        {"op": "subscribe", "id": 3, "channel": "question:1"},
    ]
    client.data_received(RESPONSE)
    assert transport.written == [request]  # nothing more after the 101
