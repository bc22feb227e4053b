"""The publication envelope (herald_contract/envelope.py)."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest

from herald_contract.envelope import (
    Envelope,
    InvalidEnvelope,
    build_envelope,
    decode_envelope,
    pack_data,
)
from herald_contract.errors import InvalidPayload


@pytest.mark.parametrize(
    "data", [None, True, 0, -1, 2**63 - 1, 1.5, "", "é", [1, [2]], {"a": {"b": None}}]
)
def test_a_built_envelope_decodes_to_its_fields(data: Any) -> None:
    raw = build_envelope("ep0ch", 12, 1_700_000_000_123, "evt:1", pack_data(data))
    assert decode_envelope(raw) == Envelope("ep0ch", 12, 1_700_000_000_123, "evt:1", data)


def test_the_envelope_is_one_six_element_msgpack_array() -> None:
    raw = build_envelope("e", 1, 2, "", pack_data({"x": 1}))
    assert msgpack.unpackb(raw) == [1, "e", 1, 2, "", {"x": 1}]
    assert raw[0] == 0x96


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        msgpack.packb([2, "e", 1, 2, "", None]),
        msgpack.packb([1, "e", 1, 2, ""]),
        msgpack.packb({"epoch": "e"}),
        msgpack.packb([1, 5, 1, 2, "", None]),
        msgpack.packb([1, "e", "1", 2, "", None]),
        msgpack.packb([1, "e", 1, 2.5, "", None]),
        msgpack.packb([1, "e", 1, 2, None, None]),
        msgpack.packb([1, "e", 1, 2, "", None]) + b"\x00",
    ],
)
def test_bytes_that_are_not_a_version_1_envelope_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        decode_envelope(raw)


def test_invalid_envelope_is_a_value_error() -> None:
    assert issubclass(InvalidEnvelope, ValueError)


@pytest.mark.parametrize(
    "data", [{1, 2}, b"raw", math.nan, math.inf, object(), (1, 2j), 2**64, "\ud800"]
)
def test_data_that_cannot_travel_as_json_is_refused(data: Any) -> None:
    with pytest.raises(InvalidPayload):
        pack_data(data)


def test_the_size_limit_counts_the_json_form() -> None:
    data = {"text": "x" * 20}
    size = len(json.dumps(data, separators=(",", ":")))
    assert msgpack.unpackb(pack_data(data, max_bytes=size)) == data
    with pytest.raises(InvalidPayload, match=f"more than {size - 1}"):
        pack_data(data, max_bytes=size - 1)


def test_data_is_packed_as_json_clients_see_it() -> None:
    # JSON has string keys and arrays only, so a msgpack client gets the same value.
    assert msgpack.unpackb(pack_data({1: (2, 3), None: True})) == {"1": [2, 3], "null": True}
