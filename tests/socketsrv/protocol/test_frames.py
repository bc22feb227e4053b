"""socketsrv/protocol/frames.py: the frames the server writes are valid RFC 6455 frames.

Each frame is fed to websockets' own sans-I/O client (``ClientProtocol`` in the OPEN state),
which must parse it as one unmasked, unfragmented data frame and not answer with a close.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from socketsrv.protocol import frames
from socketsrv.protocol.codes import ERROR_TABLE, ErrorCode
from socketsrv.protocol.commands import WireFormat

WIRES = pytest.mark.parametrize("wire", list(WireFormat), ids=lambda w: w.name.lower())
OPCODE = {WireFormat.JSON: Opcode.TEXT, WireFormat.MSGPACK: Opcode.BINARY}


def received_by_a_client(data: bytes) -> list[Frame]:
    """The frames a websocket client decodes from *data*; fails if it rejects any byte."""
    client = ClientProtocol(parse_uri("ws://localhost/ws"), state=State.OPEN, max_size=None)
    client.receive_data(data)
    assert client.parser_exc is None, client.parser_exc
    assert client.data_to_send() == [], "the client answered (a close frame?)"
    events = client.events_received()
    assert all(isinstance(event, Frame) for event in events)
    return [event for event in events if isinstance(event, Frame)]


def decoded(data: bytes, wire: WireFormat) -> Any:
    """The one message in *data*, decoded as a client on *wire* would."""
    (frame,) = received_by_a_client(data)
    assert frame.fin
    assert frame.opcode is OPCODE[wire]
    if wire is WireFormat.JSON:
        return json.loads(bytes(frame.data).decode("utf-8"))
    return msgpack.unpackb(frame.data, raw=False)


# Frame headers at the length boundaries of RFC 6455 section 5.2


@WIRES
@pytest.mark.parametrize(
    ("length", "header_length"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_a_frame_uses_the_shortest_length_encoding(
    wire: WireFormat, length: int, header_length: int
) -> None:
    payload = b"a" * length
    frame = frames.ws_frame(payload, wire)
    assert len(frame) == header_length + length
    assert frame[header_length:] == payload
    assert frame[1] & 0x80 == 0, "a server frame is never masked"
    (parsed,) = received_by_a_client(frame)
    assert (parsed.opcode, parsed.fin, parsed.data) == (OPCODE[wire], True, payload)
    assert (parsed.rsv1, parsed.rsv2, parsed.rsv3) == (False, False, False)


@pytest.mark.parametrize(
    ("length", "length_field"),
    [
        (126, b"\x7e\x00\x7e"),
        (65535, b"\x7e\xff\xff"),
        (65536, b"\x7f" + (65536).to_bytes(8, "big")),
    ],
)
def test_extended_lengths_are_big_endian(length: int, length_field: bytes) -> None:
    frame = frames.ws_frame(b"a" * length, WireFormat.MSGPACK)
    assert frame[0] == 0x82
    assert frame[1 : 1 + len(length_field)] == length_field


def test_json_frames_are_text_and_msgpack_frames_are_binary() -> None:
    assert frames.ws_frame(b"{}", WireFormat.JSON)[0] == 0x81
    assert frames.ws_frame(b"\x80", WireFormat.MSGPACK)[0] == 0x82


def test_several_frames_written_together_are_read_apart() -> None:
    stream = b"".join(
        frames.publication("question:1", offset, {"score": offset}, WireFormat.JSON)
        for offset in range(1, 4)
    )
    assert [json.loads(bytes(f.data))["offset"] for f in received_by_a_client(stream)] == [1, 2, 3]


# Payloads round-trip


@WIRES
@pytest.mark.parametrize(
    "data",
    [
        {"kind": "score", "post": 42, "score": -3, "version": 17},
        {"title": "Pourquoi \u00e9chouer ? \u2603 \U0001f600", "tags": ["c++", "c#"]},
        [1, 2.5, None, True, "x"],
        "just a string",
        None,
        {"big": "x" * 70000},
    ],
    ids=["score", "unicode", "list", "string", "null", "large"],
)
def test_a_publication_round_trips(wire: WireFormat, data: Any) -> None:
    message = decoded(frames.publication("question:42", 7, data, wire), wire)
    assert message == {"type": "pub", "channel": "question:42", "offset": 7, "data": data}


@WIRES
def test_a_reply_round_trips(wire: WireFormat) -> None:
    result = {"epoch": "e1", "offset": 9, "recovery": "recovered"}
    assert decoded(frames.reply(3, result, wire), wire) == {
        "type": "reply",
        "id": 3,
        "result": result,
    }


@WIRES
@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name.lower())
def test_an_error_carries_its_code_and_the_table_message(wire: WireFormat, code: ErrorCode) -> None:
    assert decoded(frames.error(5, code, wire), wire) == {
        "type": "error",
        "id": 5,
        "code": int(code),
        "message": ERROR_TABLE[code].message,
    }


@WIRES
def test_an_error_without_an_id_sends_null_and_its_detail(wire: WireFormat) -> None:
    message = decoded(frames.error(None, ErrorCode.BAD_REQUEST, wire, "malformed JSON"), wire)
    assert message["id"] is None
    assert message["message"] == "bad request: malformed JSON"


@WIRES
def test_the_heartbeat_is_a_prebuilt_hb_frame(wire: WireFormat) -> None:
    assert decoded(frames.HEARTBEAT[wire], wire) == {"type": "hb"}
    assert frames.HEARTBEAT[wire] == frames.encode({"type": "hb"}, wire)


def test_json_payloads_are_compact_utf8() -> None:
    payload = frames.encode_payload({"type": "pub", "data": "\u00e9"}, WireFormat.JSON)
    assert payload == '{"type":"pub","data":"\u00e9"}'.encode()


def test_msgpack_payloads_use_str_for_strings() -> None:
    payload = frames.encode_payload({"type": "hb"}, WireFormat.MSGPACK)
    assert payload == b"\x81\xa4type\xa2hb"


def test_the_same_publication_gives_the_same_bytes_for_every_subscriber() -> None:
    one = frames.publication("tag:python", 3, {"id": 9}, WireFormat.JSON)
    two = frames.publication("tag:python", 3, {"id": 9}, WireFormat.JSON)
    assert one == two


@pytest.mark.parametrize(
    "data",
    [
        {"title": "Ünïcødé ✓ 日本", "score": -3, "ratio": 0.1, "tiny": 5e-324, "big": 2**63 - 1},
        {"nested": [[], {}, [1, [2, [3]]]], "flags": [True, False, None], "empty": ""},
        {"escapes": 'quote " backslash \\ newline \n tab \t nul \x00 bell \x07'},
        [1.5, 1e16, 123456789.123, -0.0],
    ],
    ids=["unicode-numbers", "nesting", "escapes", "floats"],
)
def test_a_json_payload_reads_back_as_what_json_dumps_would_have_sent(data: Any) -> None:
    payload = frames.encode_payload({"type": "pub", "data": data}, WireFormat.JSON)
    expected = json.dumps({"type": "pub", "data": data}, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(payload) == json.loads(expected)


def test_a_json_payload_is_byte_for_byte_what_json_dumps_gives_but_for_exponents() -> None:
    data = {"s": 'é " \\ \n \x00 \u2028', "n": [0.1, -3, 2**63 - 1, True, None], "o": {}}
    expected = json.dumps({"data": data}, separators=(",", ":"), ensure_ascii=False).encode()
    assert frames.encode_payload({"data": data}, WireFormat.JSON) == expected
    # Exponents lose json's "+" and leading zero ("1e16", not "1e+16"): the same numbers.
    assert frames.encode_payload({"data": [1e16, 1e-7]}, WireFormat.JSON) == b'{"data":[1e16,1e-7]}'
