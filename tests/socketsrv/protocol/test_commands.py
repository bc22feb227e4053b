"""socketsrv/protocol/commands.py: every command parses, every bad input gets its error code."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from herald_contract.channels import ChannelKind
from herald_contract.envelope import StreamPosition
from socketsrv.errors import CommandError
from socketsrv.protocol.codes import ErrorCode
from socketsrv.protocol.commands import (
    MAX_REQUEST_ID,
    MAX_TOKEN_LENGTH,
    Connect,
    Ping,
    Pong,
    Subscribe,
    Unsubscribe,
    WireFormat,
    parse_command,
)

WIRES = pytest.mark.parametrize("wire", list(WireFormat), ids=lambda w: w.name.lower())


def encode(fields: Any, wire: WireFormat) -> bytes | str:
    """A client message as a browser would send it on *wire*."""
    if wire is WireFormat.JSON:
        return json.dumps(fields)
    return msgpack.packb(fields, use_bin_type=True)


def parse(fields: Any, wire: WireFormat = WireFormat.JSON) -> object:
    return parse_command(encode(fields, wire), wire)


def assert_command_error(
    payload: bytes | str, wire: WireFormat, code: ErrorCode, request_id: int | None = None
) -> CommandError:
    with pytest.raises(CommandError) as caught:
        parse_command(payload, wire)
    assert caught.value.code is code, caught.value
    assert caught.value.request_id == request_id
    return caught.value


def assert_rejected(
    fields: Any,
    code: ErrorCode,
    request_id: int | None = None,
    wire: WireFormat = WireFormat.JSON,
) -> CommandError:
    return assert_command_error(encode(fields, wire), wire, code, request_id)


# Every command parses, in both formats


@WIRES
def test_connect_without_a_token_is_anonymous(wire: WireFormat) -> None:
    assert parse({"op": "connect", "id": 1}, wire) == Connect(1, None)
    assert parse({"op": "connect", "id": 1, "token": None}, wire) == Connect(1, None)


@WIRES
def test_connect_carries_its_token(wire: WireFormat) -> None:
    assert parse({"op": "connect", "id": 2, "token": "a.b.c"}, wire) == Connect(2, "a.b.c")


@WIRES
def test_subscribe_without_since_asks_for_no_recovery(wire: WireFormat) -> None:
    command = parse({"op": "subscribe", "id": 3, "channel": "question:42"}, wire)
    assert isinstance(command, Subscribe)
    assert (command.id, command.channel.name, command.since) == (3, "question:42", None)
    assert command.channel.kind is ChannelKind.QUESTION
    assert command.channel.key == "42"


@WIRES
def test_subscribe_with_since_carries_the_position(wire: WireFormat) -> None:
    fields = {
        "op": "subscribe",
        "id": 4,
        "channel": "user:7",
        "since": {"epoch": "e1", "offset": 9},
    }
    command = parse(fields, wire)
    assert isinstance(command, Subscribe)
    assert command.since == StreamPosition("e1", 9)
    assert command.channel.kind is ChannelKind.USER


@WIRES
def test_subscribe_with_a_null_since_asks_for_no_recovery(wire: WireFormat) -> None:
    command = parse({"op": "subscribe", "id": 5, "channel": "questions:new", "since": None}, wire)
    assert isinstance(command, Subscribe)
    assert command.since is None


@WIRES
def test_unsubscribe_names_its_channel(wire: WireFormat) -> None:
    command = parse({"op": "unsubscribe", "id": 6, "channel": "tag:python"}, wire)
    assert isinstance(command, Unsubscribe)
    assert (command.id, command.channel.name, command.channel.kind) == (
        6,
        "tag:python",
        ChannelKind.TAG,
    )


@WIRES
def test_ping_has_an_id(wire: WireFormat) -> None:
    assert parse({"op": "ping", "id": 7}, wire) == Ping(7)


@WIRES
def test_pong_needs_no_id_and_ignores_one(wire: WireFormat) -> None:
    assert parse({"op": "pong"}, wire) == Pong()
    assert parse({"op": "pong", "id": "whatever"}, wire) == Pong()


@WIRES
def test_unknown_fields_are_ignored(wire: WireFormat) -> None:
    assert parse({"op": "ping", "id": 8, "extra": [1, 2]}, wire) == Ping(8)


def test_the_wire_formats_are_named_by_their_subprotocols() -> None:
    assert WireFormat.JSON.subprotocol == "herald.v1.json"
    assert WireFormat.MSGPACK.subprotocol == "herald.v1.msgpack"


# Messages that are not commands at all: 400 with no id


@pytest.mark.parametrize("payload", ["", "{", '{"op": "ping", "id": 1', "nul", "{'op': 'ping'}"])
def test_malformed_json_is_a_bad_request(payload: str) -> None:
    error = assert_command_error(payload, WireFormat.JSON, ErrorCode.BAD_REQUEST)
    assert error.why == "malformed JSON"


@pytest.mark.parametrize(
    "payload",
    [
        '{"op": "ping", "id": 1, "x": NaN}',
        '{"op": "ping", "id": 1, "x": Infinity}',
        '{"op": "ping", "id": 1, "x": 1e400}',
        '{"op": "ping", "id": 1, "x": "\\ud800"}',
    ],
    ids=["nan", "infinity", "out-of-range", "lone-surrogate"],
)
def test_json_outside_rfc_8259_is_malformed(payload: str) -> None:
    error = assert_command_error(payload, WireFormat.JSON, ErrorCode.BAD_REQUEST)
    assert error.why == "malformed JSON"


def test_deeply_nested_json_is_a_bad_request_not_a_crash() -> None:
    assert_command_error("[" * 2000 + "]" * 2000, WireFormat.JSON, ErrorCode.BAD_REQUEST)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        b"\x82\xa2op",  # a map cut short
        msgpack.packb({"op": "ping", "id": 1}) + b"\x00",  # trailing data
        msgpack.packb({1: "ping"}),  # a non-string map key
        b"\x91" * 5000 + b"\x90",  # nested deeper than the unpacker's stack
    ],
    ids=["empty", "unused-byte", "truncated", "trailing-data", "int-key", "deep"],
)
def test_malformed_msgpack_is_a_bad_request(payload: bytes) -> None:
    error = assert_command_error(payload, WireFormat.MSGPACK, ErrorCode.BAD_REQUEST)
    assert error.why == "malformed msgpack"


def test_a_binary_frame_on_the_json_protocol_is_a_bad_request() -> None:
    error = assert_command_error(b'{"op": "ping", "id": 1}', WireFormat.JSON, ErrorCode.BAD_REQUEST)
    assert "binary frame" in error.why


def test_a_text_frame_on_the_msgpack_protocol_is_a_bad_request() -> None:
    error = assert_command_error(
        '{"op": "ping", "id": 1}', WireFormat.MSGPACK, ErrorCode.BAD_REQUEST
    )
    assert "text frame" in error.why


@WIRES
@pytest.mark.parametrize("fields", [[], ["op", "ping"], 1, "connect", None, True])
def test_a_message_that_is_not_an_object_is_a_bad_request(wire: WireFormat, fields: Any) -> None:
    assert_rejected(fields, ErrorCode.BAD_REQUEST, wire=wire)


@WIRES
@pytest.mark.parametrize("fields", [{}, {"id": 1}, {"op": None, "id": 1}, {"op": 1, "id": 1}])
def test_a_command_without_a_string_op_is_a_bad_request(wire: WireFormat, fields: Any) -> None:
    assert_rejected(fields, ErrorCode.BAD_REQUEST, wire=wire)


# Unknown op: 404, and the id is kept when it is valid


@WIRES
def test_an_unknown_op_is_an_unknown_command_that_keeps_the_id(wire: WireFormat) -> None:
    assert_rejected({"op": "publish", "id": 12}, ErrorCode.UNKNOWN_COMMAND, 12, wire)


@pytest.mark.parametrize("bad_id", [None, 0, True, 1.5, "12", 2**31])
def test_an_unknown_op_with_an_invalid_id_has_no_id(bad_id: Any) -> None:
    assert_rejected({"op": "publish", "id": bad_id}, ErrorCode.UNKNOWN_COMMAND, None)


def test_an_unknown_op_is_echoed_only_in_part() -> None:
    error = assert_rejected({"op": "x" * 1000, "id": 1}, ErrorCode.UNKNOWN_COMMAND, 1)
    assert len(error.why) < 64


def test_op_names_are_case_sensitive() -> None:
    assert_rejected({"op": "Ping", "id": 1}, ErrorCode.UNKNOWN_COMMAND, 1)


# Request ids


@WIRES
@pytest.mark.parametrize("op", ["connect", "subscribe", "unsubscribe", "ping"])
@pytest.mark.parametrize(
    "bad_id",
    [None, True, False, 1.0, 1.5, "1", [1], 0, -1, 2**31, 2**40],
    ids=[
        "null",
        "true",
        "false",
        "float-1.0",
        "float",
        "string",
        "list",
        "0",
        "-1",
        "2^31",
        "2^40",
    ],
)
def test_a_command_with_an_invalid_id_is_a_bad_request_without_an_id(
    wire: WireFormat, op: str, bad_id: Any
) -> None:
    fields = {"op": op, "id": bad_id, "channel": "question:1"}
    assert_rejected(fields, ErrorCode.BAD_REQUEST, None, wire)


@WIRES
@pytest.mark.parametrize("op", ["connect", "subscribe", "unsubscribe", "ping"])
def test_a_command_without_an_id_is_a_bad_request(wire: WireFormat, op: str) -> None:
    assert_rejected({"op": op, "channel": "question:1"}, ErrorCode.BAD_REQUEST, None, wire)


@pytest.mark.parametrize("request_id", [1, MAX_REQUEST_ID])
def test_ids_from_1_to_2_31_minus_1_are_accepted(request_id: int) -> None:
    assert MAX_REQUEST_ID == 2**31 - 1
    assert parse({"op": "ping", "id": request_id}) == Ping(request_id)


def test_a_json_nan_id_is_a_bad_request() -> None:
    assert_command_error('{"op": "ping", "id": NaN}', WireFormat.JSON, ErrorCode.BAD_REQUEST)


# Channel names: 422 with the id


INVALID_CHANNELS = {
    "empty": "",
    "too-long": "tag:" + "a" * 61,
    "non-ascii": "tag:caf\u00e9",
    "non-ascii-digits": "question:\u0661\u0662",
    "leading-zeros": "question:007",
    "zero": "question:0",
    "negative": "question:-1",
    "over-2^63-1": f"question:{2**63}",
    "twenty-digits": "question:10000000000000000000",
    "uppercase-kind": "Question:1",
    "uppercase-tag": "tag:Python",
    "braces": "tag:{python}",
    "brace-in-id": "question:{1}",
    "unknown-kind": "forum:1",
    "questions-old": "questions:old",
    "no-colon": "question",
    "empty-key": "question:",
    "empty-tag": "tag:",
    "tag-too-long": "tag:" + "a" * 36,
    "tag-starts-with-dash": "tag:-a",
    "tag-with-space": "tag:a b",
    "user-not-an-id": "user:bob",
    "space-in-id": "question: 1",
    "two-colons": "question:1:2",
    "not-a-string": 42,
    "null": None,
}


@WIRES
@pytest.mark.parametrize("name", INVALID_CHANNELS.values(), ids=INVALID_CHANNELS.keys())
@pytest.mark.parametrize("op", ["subscribe", "unsubscribe"])
def test_an_invalid_channel_name_is_refused_with_the_id(
    wire: WireFormat, op: str, name: Any
) -> None:
    assert_rejected({"op": op, "id": 21, "channel": name}, ErrorCode.INVALID_CHANNEL, 21, wire)


def test_a_missing_channel_is_an_invalid_channel() -> None:
    assert_rejected({"op": "subscribe", "id": 22}, ErrorCode.INVALID_CHANNEL, 22)


def test_a_channel_sent_as_msgpack_bin_is_an_invalid_channel() -> None:
    payload = msgpack.packb(
        {"op": "subscribe", "id": 23, "channel": b"question:1"}, use_bin_type=True
    )
    assert_command_error(payload, WireFormat.MSGPACK, ErrorCode.INVALID_CHANNEL, 23)


def test_the_invalid_channel_explanation_does_not_echo_the_name() -> None:
    error = assert_rejected(
        {"op": "subscribe", "id": 24, "channel": "tag:<script>"}, ErrorCode.INVALID_CHANNEL, 24
    )
    assert "<script>" not in error.why


VALID_CHANNELS = [
    "question:1",
    f"question:{2**63 - 1}",
    "questions:new",
    "tag:c++",
    "tag:c#",
    "tag:node.js",
    "tag:ruby-on-rails",
    "tag:4d",
    "tag:" + "a" * 35,
    "user:1",
]


@pytest.mark.parametrize("name", VALID_CHANNELS)
def test_valid_channel_names_are_accepted(name: str) -> None:
    command = parse({"op": "subscribe", "id": 25, "channel": name})
    assert isinstance(command, Subscribe)
    assert command.channel.name == name


# since: 400 with the id


BAD_SINCE = {
    "list": [1, 2],
    "string": "e1:9",
    "number": 9,
    "no-offset": {"epoch": "e1"},
    "no-epoch": {"offset": 9},
    "empty-epoch": {"epoch": "", "offset": 9},
    "long-epoch": {"epoch": "e" * 65, "offset": 9},
    "number-epoch": {"epoch": 1, "offset": 9},
    "null-epoch": {"epoch": None, "offset": 9},
    "negative-offset": {"epoch": "e1", "offset": -1},
    "float-offset": {"epoch": "e1", "offset": 9.0},
    "bool-offset": {"epoch": "e1", "offset": True},
    "string-offset": {"epoch": "e1", "offset": "9"},
    "offset-2^63": {"epoch": "e1", "offset": 2**63},
}


@WIRES
@pytest.mark.parametrize("since", BAD_SINCE.values(), ids=BAD_SINCE.keys())
def test_a_bad_since_is_a_bad_request_with_the_id(wire: WireFormat, since: Any) -> None:
    fields = {"op": "subscribe", "id": 31, "channel": "question:1", "since": since}
    assert_rejected(fields, ErrorCode.BAD_REQUEST, 31, wire)


@pytest.mark.parametrize(
    "since",
    [{"epoch": "e", "offset": 0}, {"epoch": "e" * 64, "offset": 2**63 - 1}],
    ids=["smallest", "largest"],
)
def test_since_accepts_the_whole_range(since: dict[str, Any]) -> None:
    command = parse({"op": "subscribe", "id": 32, "channel": "question:1", "since": since})
    assert isinstance(command, Subscribe)
    assert command.since == StreamPosition(since["epoch"], since["offset"])


# Tokens: 400 with the id


@WIRES
@pytest.mark.parametrize(
    "token", ["t" * (MAX_TOKEN_LENGTH + 1), 123, ["a.b.c"], {"jwt": "a.b.c"}, True]
)
def test_an_oversize_or_non_string_token_is_a_bad_request_with_the_id(
    wire: WireFormat, token: Any
) -> None:
    assert_rejected({"op": "connect", "id": 41, "token": token}, ErrorCode.BAD_REQUEST, 41, wire)


def test_a_token_of_the_maximum_length_is_accepted() -> None:
    token = "t" * MAX_TOKEN_LENGTH
    assert parse({"op": "connect", "id": 42, "token": token}) == Connect(42, token)
