"""Server frames: encode once, as complete websocket frames ready for ``transport.write``.

A server's websocket frames are not masked (RFC 6455 section 5.1), so the bytes of one frame
are the same for every connection: the hub builds a publication's frame once per wire format
and writes those very bytes to every subscriber. That only holds without per-message
compression; with permessage-deflate negotiated the connection frames payloads itself.

Server frames (docs/protocol.md#server-frames)::

    {"type": "pub", "channel": c, "offset": n, "data": d}   (+ "epoch", + "conflated")
    {"type": "reply", "id": i, "result": {...}}
    {"type": "error", "id": i | null, "code": n, "message": s}
    {"type": "hb"}
    {"type": "delivery", "state": "paused" | "live"}
"""

from __future__ import annotations

import enum
from typing import Any

import msgpack
import msgspec

from socketsrv.protocol.codes import ERROR_TABLE, ErrorCode
from socketsrv.protocol.commands import WireFormat

_OP_TEXT = 0x81  # FIN + text
_OP_BINARY = 0x82  # FIN + binary


def ws_frame(payload: bytes, wire: WireFormat) -> bytes:
    """Wrap *payload* in one unmasked, unfragmented websocket data frame (RFC 6455 5.2)."""
    first = _OP_TEXT if wire is WireFormat.JSON else _OP_BINARY
    n = len(payload)
    if n < 126:
        head = bytes((first, n))
    elif n < 65536:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + payload


_JSON = msgspec.json.Encoder()
"""Compact JSON in UTF-8 without ASCII escapes, what ``json.dumps(separators=(",", ":"),
ensure_ascii=False).encode()`` gives for the JSON-compatible data a publication carries
(herald_contract.envelope.pack_data), in a twentieth of the time: every reply of a
handshake and every replayed frame is encoded here."""


def encode_payload(message: dict[str, Any], wire: WireFormat) -> bytes:
    """Encode one server message without the websocket frame header."""
    if wire is WireFormat.JSON:
        return _JSON.encode(message)
    return msgpack.packb(message, use_bin_type=True)


def encode(message: dict[str, Any], wire: WireFormat) -> bytes:
    """Encode one server message as a complete websocket frame."""
    return ws_frame(encode_payload(message, wire), wire)


def publication(
    channel: str,
    offset: int,
    data: Any,
    wire: WireFormat,
    epoch: str | None = None,
    conflated: int | None = None,
) -> bytes:
    """A publication frame; with *epoch* (the first offset of an epoch) it names the epoch.

    With *conflated* (one connection's copy, built when it is written: socketsrv/outbox.py)
    it says that the offsets from *conflated* up to *offset* - 1 that this connection did not
    get were superseded by newer publications with the same conflation key: not a gap
    (docs/protocol.md#conflation).
    """
    frame: dict[str, Any] = {"type": "pub", "channel": channel, "offset": offset, "data": data}
    if epoch is not None:
        frame["epoch"] = epoch
    if conflated is not None:
        frame["conflated"] = conflated
    return encode(frame, wire)


def reply(request_id: int, result: dict[str, Any], wire: WireFormat) -> bytes:
    """The reply to a command that succeeded."""
    return encode({"type": "reply", "id": request_id, "result": result}, wire)


def error(request_id: int | None, code: ErrorCode, wire: WireFormat, detail: str = "") -> bytes:
    """An error reply; *detail* is a fixed, client-safe explanation (never an exception text)."""
    message = ERROR_TABLE[code].message + (f": {detail}" if detail else "")
    return encode({"type": "error", "id": request_id, "code": int(code), "message": message}, wire)


HEARTBEAT: dict[WireFormat, bytes] = {w: encode({"type": "hb"}, w) for w in WireFormat}
"""The heartbeat frame, built once per format at import (a constant, not state)."""


class Delivery(enum.Enum):
    """What a worker tells its clients about live delivery (docs/protocol.md#delivery)."""

    PAUSED = "paused"
    """The worker's bus (Redis) is down: publications are not reaching this worker."""
    LIVE = "live"
    """The bus is back and every channel the outage touched is repaired (or its subscribers
    were closed with 4003): what was missed has been sent, ahead of this frame."""


DELIVERY: dict[Delivery, dict[WireFormat, bytes]] = {
    d: {w: encode({"type": "delivery", "state": d.value}, w) for w in WireFormat} for d in Delivery
}
"""The delivery frames, built once per state and format at import: a change is pushed to
every connection of a worker, the same bytes to each."""
