"""Bad input to one worker (docs/protocol.md#bad-input and #limits).

Every kind of bad input gets its documented answer (an error reply that keeps the connection,
a close code, or an HTTP refusal), is counted in a metric, and leaves the worker serving: each
test ends with a fresh client that connects, subscribes and receives a publication.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from socketsrv.hub import ChannelState
from socketsrv.worker import Worker
from tests.support.client import HeraldTestClient, assert_closed_with, assert_still_open
from tests.support.raw_ws import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    client_frame,
    raw_connection,
)
from tests.support.tokens import TokenIssuer
from tests.support.waiting import eventually
from tests.support.worker import (
    disconnects_counted,
    handshake_rejections,
    metric,
    publish,
    running_worker,
    ws_url,
)

MAX_FRAME_BYTES = 8192
"""Small enough to pass cheaply, large enough for the long-but-legal inputs below."""

PROBE_CHANNEL = "questions:new"


# Helpers


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    async with running_worker(max_frame_bytes=MAX_FRAME_BYTES) as w:
        yield w


@pytest.fixture
async def client(worker: Worker) -> AsyncIterator[HeraldTestClient]:
    """A connected client on the JSON protocol."""
    c = HeraldTestClient(ws_url(worker))
    await c.open()
    yield c
    await c.close()


@pytest.fixture
async def msgpack_client(worker: Worker) -> AsyncIterator[HeraldTestClient]:
    """A connected client on the msgpack protocol."""
    c = HeraldTestClient(ws_url(worker), msgpack_wire=True)
    await c.open()
    yield c
    await c.close()


async def error_after(client: HeraldTestClient, message: str | bytes) -> dict[str, Any]:
    """Send *message* as is (str: text frame, bytes: binary frame); the error it earns."""
    seen = len(client.errors)
    await client.send_raw(message)
    await eventually(lambda: len(client.errors) > seen)
    return client.errors[seen]


def assert_error(frame: dict[str, Any], code: int, request_id: int | None = None) -> None:
    assert frame["type"] == "error", frame
    assert (frame["code"], frame["id"]) == (code, request_id), frame


def assert_counted_error(worker: Worker, answer: dict[str, Any], code: int) -> None:
    """*answer* is the error *code* naming its command's id, and the only one counted."""
    assert_error(answer, code, answer["id"])
    assert errors_counted(worker, code) == 1


def errors_counted(worker: Worker, code: int) -> float:
    return metric(worker, "herald_errors_total", code=str(code))


async def assert_worker_still_serves(worker: Worker) -> None:
    """A fresh client connects, subscribes and receives a publication."""
    probe = HeraldTestClient(ws_url(worker))
    try:
        assert (await probe.open() or {}).get("type") == "reply"
        assert (await probe.subscribe(PROBE_CHANNEL))["type"] == "reply"
        await publish(worker, PROBE_CHANNEL, "still serving")
        await eventually(lambda: probe.data(PROBE_CHANNEL) == ["still serving"])
    finally:
        await probe.close()


def subscribe_to(channel: Any, request_id: int = 7) -> str:
    return json.dumps({"op": "subscribe", "id": request_id, "channel": channel})


# Messages that are not commands: 400, connection kept

NOT_COMMANDS = [
    pytest.param('{"op": "ping", "id": 1', id="malformed-json"),
    pytest.param("", id="empty-text"),
    pytest.param("[1, 2]", id="array"),
    pytest.param('"x"', id="string"),
    pytest.param("null", id="null"),
    pytest.param("1", id="number"),
    pytest.param("{}", id="no-op"),
    pytest.param('{"op": 5, "id": 1}', id="op-not-a-string"),
    pytest.param('{"op": "ping"}', id="missing-id"),
    pytest.param('{"op": "ping", "id": null}', id="null-id"),
    pytest.param('{"op": "ping", "id": 0}', id="id-zero"),
    pytest.param('{"op": "ping", "id": -1}', id="negative-id"),
    pytest.param('{"op": "ping", "id": "1"}', id="id-as-string"),
    pytest.param('{"op": "ping", "id": 1.0}', id="id-as-float"),
    pytest.param('{"op": "ping", "id": true}', id="id-as-bool"),
    pytest.param('{"op": "ping", "id": 2147483648}', id="id-above-2**31-1"),
    pytest.param('{"op": "ping", "id": ' + "9" * 5000 + "}", id="id-of-5000-digits"),
    pytest.param("[" * 5000, id="deeply-nested-json"),
]


@pytest.mark.parametrize("message", NOT_COMMANDS)
async def test_a_text_message_that_is_not_a_command_gets_400_without_an_id(
    worker: Worker, client: HeraldTestClient, message: str
) -> None:
    assert_error(await error_after(client, message), 400)
    assert errors_counted(worker, 400) == 1
    await assert_still_open(client)
    await assert_worker_still_serves(worker)


BAD_FIELDS = [
    pytest.param({"op": "subscribe", "channel": "question:1", "since": 5}, id="since-not-object"),
    pytest.param(
        {"op": "subscribe", "channel": "question:1", "since": {"epoch": "", "offset": 1}},
        id="since-empty-epoch",
    ),
    pytest.param(
        {"op": "subscribe", "channel": "question:1", "since": {"epoch": "e" * 65, "offset": 1}},
        id="since-epoch-too-long",
    ),
    pytest.param(
        {"op": "subscribe", "channel": "question:1", "since": {"epoch": "e", "offset": -1}},
        id="since-negative-offset",
    ),
    pytest.param(
        {"op": "subscribe", "channel": "question:1", "since": {"epoch": "e", "offset": "1"}},
        id="since-offset-as-string",
    ),
    pytest.param({"op": "connect", "token": 5}, id="token-not-a-string"),
    pytest.param({"op": "connect", "token": "t" * 4097}, id="token-too-long"),
]


@pytest.mark.parametrize("command", BAD_FIELDS)
async def test_a_command_with_a_bad_field_gets_400_with_its_id(
    worker: Worker, client: HeraldTestClient, command: dict[str, Any]
) -> None:
    assert_error(await error_after(client, json.dumps({**command, "id": 7})), 400, 7)
    assert errors_counted(worker, 400) == 1
    await assert_still_open(client)
    await assert_worker_still_serves(worker)


async def test_a_binary_frame_on_the_json_protocol_gets_400(
    worker: Worker, client: HeraldTestClient
) -> None:
    assert_error(await error_after(client, b'{"op": "ping", "id": 7}'), 400)
    assert errors_counted(worker, 400) == 1
    await assert_still_open(client)
    await assert_worker_still_serves(worker)


async def test_a_text_frame_on_the_msgpack_protocol_gets_400(
    worker: Worker, msgpack_client: HeraldTestClient
) -> None:
    assert_error(await error_after(msgpack_client, '{"op": "ping", "id": 7}'), 400)
    assert errors_counted(worker, 400) == 1
    await assert_still_open(msgpack_client)
    await assert_worker_still_serves(worker)


NOT_MSGPACK_COMMANDS = [
    pytest.param(b"\xc1", id="never-used-byte"),
    pytest.param(b"\x92\x01", id="truncated-array"),
    pytest.param(b"\x01\x02", id="extra-data"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\x81\x01\x02", id="integer-map-key"),
    pytest.param(b"\x91" * 5000 + b"\xc0", id="deeply-nested"),
    pytest.param(msgpack.packb([1, 2]), id="array"),
    pytest.param(msgpack.packb(None), id="nil"),
    pytest.param(msgpack.packb({b"op": b"ping", b"id": 1}), id="binary-keys"),
    pytest.param(msgpack.packb({"op": "ping", "id": 1.5}), id="float-id"),
]


@pytest.mark.parametrize("message", NOT_MSGPACK_COMMANDS)
async def test_a_binary_message_that_is_not_a_msgpack_command_gets_400(
    worker: Worker, msgpack_client: HeraldTestClient, message: bytes
) -> None:
    assert_error(await error_after(msgpack_client, message), 400)
    assert errors_counted(worker, 400) == 1
    await assert_still_open(msgpack_client)
    await assert_worker_still_serves(worker)


# Commands the server does not know, channels outside the grammar


UNKNOWN_OPS = [
    pytest.param('{"op": "publish", "id": 9}', 9, id="with-id"),
    pytest.param('{"op": "CONNECT", "id": 9}', 9, id="wrong-case"),
    pytest.param('{"op": "publish"}', None, id="without-id"),
    pytest.param('{"op": "publish", "id": "9"}', None, id="with-invalid-id"),
]


@pytest.mark.parametrize(("message", "echoed_id"), UNKNOWN_OPS)
async def test_an_unknown_op_gets_404_echoing_a_valid_id(
    worker: Worker, client: HeraldTestClient, message: str, echoed_id: int | None
) -> None:
    assert_error(await error_after(client, message), 404, echoed_id)
    assert errors_counted(worker, 404) == 1
    await assert_still_open(client)
    await assert_worker_still_serves(worker)


INVALID_CHANNELS = [
    pytest.param("tag:" + "a" * 61, id="too-long"),
    pytest.param("tag:c sharp", id="space"),
    pytest.param("tag:c$", id="bad-character"),
    pytest.param("tag:Python", id="uppercase-tag"),
    pytest.param("chat:1", id="unknown-kind"),
    pytest.param("question1", id="no-colon"),
    pytest.param("question:01", id="leading-zero-id"),
    pytest.param("question:0", id="zero-id"),
    pytest.param("question:9223372036854775808", id="id-above-2**63-1"),
    pytest.param("question:", id="empty-id"),
    pytest.param("question:\u0661\u0662", id="non-ascii-digits"),
    pytest.param("questions:old", id="unknown-questions-channel"),
    pytest.param("", id="empty"),
    pytest.param(42, id="not-a-string"),
    pytest.param(None, id="missing"),
]


@pytest.mark.parametrize("channel", INVALID_CHANNELS)
async def test_a_subscribe_to_an_invalid_channel_gets_422_with_its_id(
    worker: Worker, client: HeraldTestClient, channel: Any
) -> None:
    assert_error(await error_after(client, subscribe_to(channel)), 422, 7)
    assert errors_counted(worker, 422) == 1
    assert worker.hub.channel_count == 0
    await assert_still_open(client)
    await assert_worker_still_serves(worker)


async def test_an_unsubscribe_from_an_invalid_channel_gets_422(
    worker: Worker, client: HeraldTestClient
) -> None:
    message = json.dumps({"op": "unsubscribe", "id": 7, "channel": "question:01"})
    assert_error(await error_after(client, message), 422, 7)
    assert errors_counted(worker, 422) == 1
    await assert_worker_still_serves(worker)


# Commands in the wrong state


@pytest.mark.parametrize(
    "command",
    [
        pytest.param({"op": "subscribe", "channel": "question:1"}, id="subscribe"),
        pytest.param({"op": "unsubscribe", "channel": "question:1"}, id="unsubscribe"),
        pytest.param({"op": "ping"}, id="ping"),
    ],
)
async def test_a_command_before_connect_gets_401(worker: Worker, command: dict[str, Any]) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open(send_connect=False)
    try:
        answer = await client.request(command)
        assert_counted_error(worker, answer, 401)
        assert (await client.request({"op": "connect"}))["type"] == "reply"
    finally:
        await client.close()
    await assert_worker_still_serves(worker)


async def test_a_second_connect_gets_405(worker: Worker, client: HeraldTestClient) -> None:
    answer = await client.request({"op": "connect"})
    assert_counted_error(worker, answer, 405)
    await assert_still_open(client)
    await assert_worker_still_serves(worker)


async def test_a_second_subscribe_to_one_channel_gets_409(
    worker: Worker, client: HeraldTestClient
) -> None:
    assert (await client.subscribe("question:1"))["type"] == "reply"
    answer = await client.request({"op": "subscribe", "channel": "question:1"})
    assert_counted_error(worker, answer, 409)
    await assert_worker_still_serves(worker)


async def test_an_unsubscribe_from_a_channel_not_subscribed_gets_410(
    worker: Worker, client: HeraldTestClient
) -> None:
    answer = await client.request({"op": "unsubscribe", "channel": "question:1"})
    assert_counted_error(worker, answer, 410)
    await assert_worker_still_serves(worker)


async def test_an_anonymous_subscribe_to_a_user_channel_gets_403(
    worker: Worker, client: HeraldTestClient
) -> None:
    answer = await client.request({"op": "subscribe", "channel": "user:42"})
    assert_counted_error(worker, answer, 403)
    assert worker.hub.channel_count == 0
    await assert_worker_still_serves(worker)


async def test_a_subscribe_to_another_users_channel_gets_403() -> None:
    issuer = TokenIssuer()
    async with running_worker(jwt_public_key_pem=issuer.public_pem) as worker:
        client = HeraldTestClient(ws_url(worker), token=issuer.token("7"))
        await client.open()
        try:
            answer = await client.request({"op": "subscribe", "channel": "user:42"})
            assert_counted_error(worker, answer, 403)
            assert worker.hub.channel_count == 0
        finally:
            await client.close()
        await assert_worker_still_serves(worker)


# Limits


async def test_a_flood_of_commands_gets_429_then_close_4006() -> None:
    async with running_worker(commands_per_s=1.0, commands_burst=3, flood_refusals=5) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()  # the connect takes one of the 3 tokens
        try:
            for n in range(1, 11):
                await client.send_raw(subscribe_to(f"question:{n}", request_id=100 + n))
            await assert_closed_with(client, 4006)
        finally:
            await client.close()
        assert [(e["code"], e["id"]) for e in client.errors] == [
            (429, 100 + n) for n in (3, 4, 5, 6)
        ]
        assert errors_counted(worker, 429) == 4
        assert disconnects_counted(worker, 4006) == 1
        await assert_worker_still_serves(worker)


async def test_a_subscription_beyond_max_subscriptions_gets_430() -> None:
    async with running_worker(max_subscriptions=3) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        try:
            for n in (1, 2, 3):
                assert (await client.subscribe(f"question:{n}"))["type"] == "reply"
            answer = await client.request({"op": "subscribe", "channel": "question:4"})
            assert_counted_error(worker, answer, 430)

            await client.request({"op": "unsubscribe", "channel": "question:1"})
            assert (await client.subscribe("question:4"))["type"] == "reply"
        finally:
            await client.close()
        await assert_worker_still_serves(worker)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("x" * (MAX_FRAME_BYTES + 1), id="one-frame"),
        pytest.param(["x" * 3000, "x" * 3000, "x" * 3000], id="fragments-adding-up"),
    ],
)
async def test_a_message_over_max_frame_bytes_closes_1009(
    worker: Worker, client: HeraldTestClient, message: str | list[str]
) -> None:
    assert client.ws is not None
    await client.ws.send(message)
    await assert_closed_with(client, 1009)
    assert disconnects_counted(worker, 1009) == 1
    await assert_worker_still_serves(worker)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b"\xff\xfe", id="one-frame"),
        pytest.param([b'{"op": "ping", ', b'"id": 7, "x": "\xff"}'], id="fragments"),
    ],
)
async def test_a_text_message_that_is_not_utf8_closes_1007(
    worker: Worker, client: HeraldTestClient, message: bytes | list[bytes]
) -> None:
    assert client.ws is not None
    await client.ws.send(message, text=True)
    await assert_closed_with(client, 1007)
    assert disconnects_counted(worker, 1007) == 1
    await assert_worker_still_serves(worker)


async def test_a_fragmented_command_is_assembled_and_answered(
    worker: Worker, client: HeraldTestClient
) -> None:
    assert client.ws is not None
    await client.ws.send(['{"op": "subscr', 'ibe", "id": 7, ', '"channel": "question:1"}'])
    await eventually(lambda: worker.hub.channel_state("question:1") is ChannelState.LIVE)
    await eventually(lambda: worker.hub.subscriber_count("question:1") == 1)
    await publish(worker, "question:1", "hello")
    await eventually(lambda: "question:1" in client.channels)
    assert client.data("question:1") == ["hello"]


async def test_a_character_split_across_fragments_is_valid_utf8(
    worker: Worker, client: HeraldTestClient
) -> None:
    assert client.ws is not None
    e_acute = "\u00e9".encode()
    fragments = [b'{"op": "subscribe", "id": 7, "note": "' + e_acute[:1], e_acute[1:] + b'", ']
    await client.ws.send([*fragments, b'"channel": "question:1"}'], text=True)
    await eventually(lambda: worker.hub.subscriber_count("question:1") == 1)
    assert client.errors == []


# Frames that break RFC 6455: the websocket layer closes with 1002

PING = b'{"op": "ping", "id": 7}'

PROTOCOL_VIOLATIONS = [
    pytest.param([client_frame(OP_TEXT, PING, masked=False)], id="unmasked-frame"),
    pytest.param([client_frame(OP_CONT, PING)], id="continuation-without-a-start"),
    pytest.param(
        [client_frame(OP_TEXT, PING[:5], fin=False), client_frame(OP_TEXT, PING)],
        id="new-message-inside-a-fragmented-one",
    ),
    pytest.param([client_frame(OP_TEXT, PING, rsv1=True)], id="reserved-bit-without-extension"),
    pytest.param([client_frame(0x3, PING)], id="reserved-opcode"),
    pytest.param([client_frame(OP_PING, b"p", fin=False)], id="fragmented-control-frame"),
    pytest.param([client_frame(OP_PING, bytes(126))], id="control-frame-over-125-bytes"),
    pytest.param([client_frame(OP_CLOSE, (999).to_bytes(2, "big"))], id="invalid-close-code"),
]


@pytest.mark.parametrize("frames", PROTOCOL_VIOLATIONS)
async def test_a_frame_that_breaks_rfc_6455_closes_1002_and_is_counted(
    worker: Worker, frames: list[bytes]
) -> None:
    async with raw_connection(worker.port) as raw:
        await raw.open_websocket()
        await raw.send(client_frame(OP_TEXT, b'{"op": "connect", "id": 1}'), *frames)
        assert await raw.close_code() == 1002
    assert disconnects_counted(worker, 1002) == 1
    await assert_worker_still_serves(worker)


# Not even HTTP


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00\xff" * 64 + b"\r\n\r\n", id="binary-noise"),
        pytest.param(b"HELLO\r\n\r\n", id="not-a-request-line"),
        pytest.param(b"GET /ws HTTP/1.1\r\nno colon here\r\n\r\n", id="broken-header"),
    ],
)
async def test_garbage_instead_of_an_http_request_is_dropped_and_counted(
    worker: Worker, garbage: bytes
) -> None:
    async with raw_connection(worker.port) as raw:
        assert await raw.exchange(garbage) == b""
    await eventually(lambda: handshake_rejections(worker, "bad_handshake") == 1)
    assert len(worker.connections) == 0
    await assert_worker_still_serves(worker)


@pytest.mark.parametrize(
    "beginning",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32), id="tls-hello"),
        pytest.param(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n", id="unfinished-headers"),
    ],
)
async def test_a_request_that_never_completes_is_dropped_after_connect_timeout_s(
    worker: Worker, beginning: bytes
) -> None:
    async with raw_connection(worker.port) as raw:
        # The worker's connect timer closes it: exchange() returns once the worker hangs up.
        assert await raw.exchange(beginning) == b""
    await eventually(lambda: handshake_rejections(worker, "timeout") == 1)
    await assert_worker_still_serves(worker)
