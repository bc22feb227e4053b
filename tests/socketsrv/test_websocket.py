"""socketsrv/websocket.py: the handshake's answer, fragments and re-framing, without sockets."""

from __future__ import annotations

import logging

import pytest
from websockets.datastructures import Headers
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from socketsrv.protocol import frames
from socketsrv.protocol.commands import WireFormat
from socketsrv.websocket import (
    Fragments,
    Refusal,
    answer_handshake,
    reframe,
    server_protocol,
    wire_of,
)
from tests.support.raw_ws import parse_server_frame

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def opening_request(*, origin: str | None = None, subprotocol: str | None = None) -> Request:
    headers = Headers(
        [
            ("Host", "127.0.0.1"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    if origin is not None:
        headers["Origin"] = origin
    if subprotocol is not None:
        headers["Sec-WebSocket-Protocol"] = subprotocol
    return Request("/ws", headers)


def protocol(
    origins: tuple[str, ...] | None = None, *, compression: bool = False
) -> ServerProtocol:
    return server_protocol(
        origins=origins,
        compression=compression,
        max_frame_bytes=65536,
        logger=logging.getLogger("test"),
    )


@pytest.mark.parametrize("wire", list(WireFormat), ids=lambda w: w.name.lower())
def test_a_herald_subprotocol_is_accepted_and_names_the_wire_format(wire: WireFormat) -> None:
    response, rejected = answer_handshake(
        protocol(), opening_request(subprotocol=wire.subprotocol), None
    )
    assert (response.status_code, rejected) == (101, None)
    assert wire_of(response) is wire


def test_no_subprotocol_means_json() -> None:
    response, _ = answer_handshake(protocol(), opening_request(), None)
    assert wire_of(response) is WireFormat.JSON


@pytest.mark.parametrize(
    ("request_", "origins", "status", "reason"),
    [
        pytest.param(
            opening_request(subprotocol="chat"), None, 400, "subprotocol", id="subprotocol"
        ),
        pytest.param(
            opening_request(origin="https://evil.example"),
            ("https://ok.example",),
            403,
            "origin",
            id="origin",
        ),
        pytest.param(
            Request("/ws", Headers([("Host", "x")])), None, 426, "bad_handshake", id="plain"
        ),
    ],
)
def test_a_bad_request_is_answered_with_its_status_and_reason(
    request_: Request, origins: tuple[str, ...] | None, status: int, reason: str
) -> None:
    response, rejected = answer_handshake(protocol(origins), request_, None)
    assert (response.status_code, rejected) == (status, reason)


@pytest.mark.parametrize("refusal", list(Refusal), ids=lambda r: r.value)
def test_the_workers_own_refusals_are_503_or_429_with_their_label(refusal: Refusal) -> None:
    """503, except one address over its share of the worker (its connections, or its new
    connections lately): 429 (issue 11, item 6)."""
    response, rejected = answer_handshake(protocol(), opening_request(), refusal)
    status = 429 if refusal in (Refusal.ADDRESS, Refusal.ADDRESS_RATE) else 503
    assert (response.status_code, rejected) == (status, refusal.value)


def test_a_refusal_with_a_delay_says_it_in_whole_seconds_in_retry_after() -> None:
    response, _ = answer_handshake(protocol(), opening_request(), Refusal.ADDRESS_RATE, 0.3)
    assert response.headers["Retry-After"] == "1"
    response, _ = answer_handshake(protocol(), opening_request(), Refusal.ADDRESS_RATE, 2.01)
    assert response.headers["Retry-After"] == "3"


def test_fragments_join_into_one_message_at_the_last_frame() -> None:
    fragments = Fragments(b'{"op":', text=True)
    assert fragments.add(b'"ping",', fin=False) is None
    assert fragments.add(b'"id":1}', fin=True) == b'{"op":"ping","id":1}'
    assert fragments.text


def test_reframing_without_compression_keeps_the_frame() -> None:
    ws = protocol()
    response, _ = answer_handshake(ws, opening_request(), None)
    ws.send_response(response)
    ws.data_to_send()  # the 101: the websocket is open
    frame = frames.publication("question:1", 7, {"n": "x" * 300}, WireFormat.JSON)
    assert parse_server_frame(reframe(ws, frame)) == parse_server_frame(frame)
    assert parse_server_frame(frame)[0] == Opcode.TEXT
