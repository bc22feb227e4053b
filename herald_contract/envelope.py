"""The envelope a publication travels in, from the publisher through Redis to socketsrv.

One msgpack array, built by the publish script (``lua/publish.lua``) around data the
publisher packed once::

    [1, epoch: str, offset: int, published_ms: int, event_id: str, data: any]

* ``1`` is the envelope version; a reader refuses any other.
* ``epoch`` names the channel's current history; it changes when the history is lost.
* ``offset`` is the channel's publication number in that epoch, from 1, without gaps.
* ``published_ms`` is the Redis server's clock when the offset was taken (latency metrics).
* ``event_id`` is the publisher's idempotency key, ``""`` when none was given.
* ``data`` is any JSON-compatible value (so it can be sent as JSON or msgpack alike).

The same bytes are stored in the channel's history and published on its pub/sub channel, so
a replayed publication is byte-for-byte the live one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack

from herald_contract.errors import InvalidEnvelope, InvalidPayload

__all__ = [
    "ENVELOPE_VERSION",
    "MAX_DATA_BYTES",
    "Envelope",
    "InvalidEnvelope",
    "StreamPosition",
    "build_envelope",
    "decode_envelope",
    "pack_data",
]

ENVELOPE_VERSION = 1
MAX_DATA_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded publication."""

    epoch: str
    offset: int
    published_ms: int
    event_id: str
    data: Any


def pack_data(data: Any, *, max_bytes: int = MAX_DATA_BYTES) -> bytes:
    """Check that *data* is JSON-compatible and at most *max_bytes* as JSON; return it packed.

    The size is what JSON clients receive: the UTF-8 bytes of compact JSON without ASCII
    escapes, as socketsrv encodes it (``socketsrv/protocol/frames.py``), so ``"é"`` counts 2
    bytes, not the 6 of ``"\\u00e9"``. Raise :class:`InvalidPayload` otherwise. JSON
    compatibility matters because the same publication is sent as JSON to browsers that did
    not ask for msgpack.
    """
    try:
        as_json = json.dumps(data, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
        size = len(as_json.encode())
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidPayload(f"not JSON-compatible ({exc})") from None
    if size > max_bytes:
        raise InvalidPayload(f"{size} bytes as JSON, more than {max_bytes}")
    # Pack what JSON clients will see (json.dumps turns int keys into strings, for one), so a
    # msgpack client gets the same value and every reader can decode the envelope.
    try:
        return msgpack.packb(json.loads(as_json), use_bin_type=True)
    except (ValueError, OverflowError) as exc:
        raise InvalidPayload(f"not msgpack-compatible ({exc})") from None


def build_envelope(
    epoch: str, offset: int, published_ms: int, event_id: str, packed_data: bytes
) -> bytes:
    """The Python twin of the envelope that ``publish.lua`` builds (the in-process bus uses it)."""
    head = msgpack.packb([ENVELOPE_VERSION, epoch, offset, published_ms, event_id])
    # Replace the 5-element array header (0x95) by a 6-element one and append the data as is.
    return b"\x96" + head[1:] + packed_data


def decode_envelope(payload: bytes) -> Envelope:
    """Decode envelope bytes; raise :class:`InvalidEnvelope` if they are not version 1."""
    try:
        fields = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidEnvelope(f"not msgpack: {exc}") from None
    if (
        not isinstance(fields, list)
        or len(fields) != 6
        or type(fields[0]) is not int
        or fields[0] != ENVELOPE_VERSION
    ):
        raise InvalidEnvelope("not a version-1 envelope")
    _, epoch, offset, published_ms, event_id, data = fields
    if not (
        isinstance(epoch, str)
        and type(offset) is int
        and type(published_ms) is int
        and isinstance(event_id, str)
    ):
        raise InvalidEnvelope("envelope fields have the wrong types")
    return Envelope(epoch, offset, published_ms, event_id, data)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """A place in a channel's stream: the history's epoch and the last offset seen there."""

    epoch: str
    offset: int
