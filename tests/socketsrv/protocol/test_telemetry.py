"""Client telemetry in the protocol core: the report's parse, its bounds, its rate limit.

socketsrv/protocol/telemetry.py reads the ``counts`` map; socketsrv/protocol/commands.py
makes the ``telemetry`` command of it; socketsrv/protocol/session.py accepts one report per
``telemetry_interval_s`` and returns the outcome as a CountTelemetry effect.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from socketsrv.errors import CommandError
from socketsrv.protocol.codes import CLOSE_TABLE, ErrorCode
from socketsrv.protocol.commands import Telemetry, WireFormat, parse_command
from socketsrv.protocol.session import CountTelemetry, Effect, Limits, Send, Session
from socketsrv.protocol.telemetry import (
    MAX_COUNT,
    MAX_DURATION_MS,
    MAX_KEYS,
    RECONNECT_LABELS,
    InvalidTelemetry,
    TelemetryReport,
    TelemetryResult,
    parse_counts,
)
from tests.support.raw_ws import parse_server_frame

WIRES = pytest.mark.parametrize("wire", list(WireFormat), ids=lambda w: w.name.lower())

FULL_COUNTS = {
    "reconnects": {"4001": 2, "1006": 3, "local": 1},
    "recovered": 4,
    "recovery_failed": 1,
    "gaps": 1,
    "deaf": 1,
    "disconnected_ms": 5300,
    "delayed_ms": 1200,
}


def encode(fields: Any, wire: WireFormat) -> bytes | str:
    if wire is WireFormat.JSON:
        return json.dumps(fields)
    return msgpack.packb(fields, use_bin_type=True)


def report_of(counts: Any) -> TelemetryReport:
    return parse_counts(counts)


def assert_invalid(counts: Any) -> InvalidTelemetry:
    with pytest.raises(InvalidTelemetry) as caught:
        parse_counts(counts)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    return caught.value


# The command


@WIRES
def test_a_telemetry_command_parses_in_both_formats(wire: WireFormat) -> None:
    fields = {"op": "telemetry", "id": 7, "counts": FULL_COUNTS}
    command = parse_command(encode(fields, wire), wire)
    assert isinstance(command, Telemetry)
    assert command.id == 7
    assert command.report == TelemetryReport(
        reconnects=(("4001", 2), ("1006", 3), ("local", 1)),
        recovered=4,
        recovery_failed=1,
        gaps=1,
        deaf=1,
        disconnected_ms=5300,
        delayed_ms=1200,
    )


def test_a_telemetry_command_needs_an_id() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(json.dumps({"op": "telemetry", "counts": {}}), WireFormat.JSON)
    assert (caught.value.code, caught.value.request_id) == (ErrorCode.BAD_REQUEST, None)


@pytest.mark.parametrize("counts", [None, [], "x", 3], ids=["missing", "list", "str", "int"])
def test_a_telemetry_command_without_a_counts_object_is_bad_request_naming_its_id(
    counts: Any,
) -> None:
    fields: dict[str, Any] = {"op": "telemetry", "id": 8}
    if counts is not None:
        fields["counts"] = counts
    with pytest.raises(InvalidTelemetry) as caught:
        parse_command(json.dumps(fields), WireFormat.JSON)
    assert (caught.value.code, caught.value.request_id) == (ErrorCode.BAD_REQUEST, 8)


# The counts map


def test_missing_fields_count_zero_and_an_empty_report_is_valid() -> None:
    assert report_of({}) == TelemetryReport()


def test_reconnect_codes_outside_the_known_set_fold_into_other() -> None:
    report = report_of({"reconnects": {"1001": 2, "4999": 1, "banana": 1, "4000": 1}})
    assert dict(report.reconnects) == {"other": 4, "4000": 1}


def test_the_known_reconnect_labels_are_the_close_table_1006_local_and_other() -> None:
    table = {str(int(code)) for code in CLOSE_TABLE}
    assert set(RECONNECT_LABELS) == table | {"1006", "local", "other"}


def test_zero_counts_add_no_reconnect_label() -> None:
    assert report_of({"reconnects": {"4001": 0}}).reconnects == ()


def test_unknown_keys_are_ignored_and_counted() -> None:
    report = report_of({"gaps": 1, "future_thing": 5, "another": {"x": 1}})
    assert (report.gaps, report.ignored_keys) == (1, 2)


@pytest.mark.parametrize(
    "value",
    [-1, 1.5, 1.0, True, None, "3", [1], {"a": 1}, 2**31],
    ids=["negative", "float", "whole-float", "bool", "null", "str", "list", "map", "too-big"],
)
def test_a_bad_value_rejects_the_whole_report(value: Any) -> None:
    assert_invalid({"gaps": value})
    assert_invalid({"disconnected_ms": value})
    assert_invalid({"reconnects": {"4001": value}})


@pytest.mark.parametrize("reconnects", [[], 4, "4001", None], ids=["list", "int", "str", "null"])
def test_reconnects_must_be_an_object(reconnects: Any) -> None:
    assert_invalid({"reconnects": reconnects})


def test_more_entries_than_the_bound_reject_the_report() -> None:
    assert_invalid({f"k{i}": 1 for i in range(MAX_KEYS + 1)})
    assert_invalid({"reconnects": {str(4000 + i): 1 for i in range(MAX_KEYS + 1)}})


def test_an_overlong_key_rejects_the_report() -> None:
    assert_invalid({"x" * 33: 1})
    assert_invalid({"reconnects": {"4" * 33: 1}})


def test_a_non_string_key_from_msgpack_rejects_the_report() -> None:
    payload = msgpack.packb({"op": "telemetry", "id": 3, "counts": {b"gaps": 1}})
    with pytest.raises(CommandError) as caught:
        parse_command(payload, WireFormat.MSGPACK)
    assert (caught.value.code, caught.value.request_id) == (ErrorCode.BAD_REQUEST, 3)


# The clamps


def test_counts_are_clamped_per_report_and_the_report_says_so() -> None:
    report = report_of({"gaps": 10**6, "deaf": MAX_COUNT, "recovered": MAX_COUNT + 1})
    assert (report.gaps, report.deaf, report.recovered) == (MAX_COUNT, MAX_COUNT, MAX_COUNT)
    assert report.clamped


def test_durations_are_clamped_to_one_hour_per_report() -> None:
    report = report_of({"disconnected_ms": 2**31 - 1, "delayed_ms": MAX_DURATION_MS})
    assert (report.disconnected_ms, report.delayed_ms) == (MAX_DURATION_MS, MAX_DURATION_MS)
    assert report.clamped


def test_reconnects_are_clamped_per_label_after_folding() -> None:
    report = report_of({"reconnects": {"1001": 600, "4999": 600, "4001": 5}})
    assert dict(report.reconnects) == {"other": MAX_COUNT, "4001": 5}
    assert report.clamped


def test_a_report_within_the_bounds_is_not_clamped() -> None:
    assert not report_of(FULL_COUNTS).clamped


# The session: one report per interval, an effect for the adapter


class Client:
    def __init__(self, limits: Limits | None = None) -> None:
        self.now = 1000.0
        self.session = Session(
            client_id="c-1",
            wire=WireFormat.JSON,
            limits=limits or Limits(),
            verifier=None,
            now=self.now,
        )

    def send(self, **fields: Any) -> list[Effect]:
        return self.session.receive(json.dumps(fields), self.now)

    def report(self, request_id: int, counts: Any = FULL_COUNTS) -> list[Effect]:
        return self.send(op="telemetry", id=request_id, counts=counts)


def answer(effects: list[Effect]) -> dict[str, Any]:
    (send,) = [effect for effect in effects if isinstance(effect, Send)]
    _, payload = parse_server_frame(send.frame)
    return dict(json.loads(payload))


def counted(effects: list[Effect]) -> CountTelemetry:
    (effect,) = [effect for effect in effects if isinstance(effect, CountTelemetry)]
    return effect


@pytest.fixture
def client() -> Client:
    client = Client(Limits(telemetry_interval_s=30.0))
    client.send(op="connect", id=1)
    return client


def test_an_accepted_report_is_answered_and_handed_to_the_adapter(client: Client) -> None:
    effects = client.report(2)
    assert answer(effects) == {"type": "reply", "id": 2, "result": {}}
    assert counted(effects) == CountTelemetry(TelemetryResult.ACCEPTED, report_of(FULL_COUNTS))


def test_a_second_report_within_the_interval_is_refused_with_429(client: Client) -> None:
    client.report(2)
    client.now += 29.9
    effects = client.report(3)
    sent = answer(effects)
    assert (sent["type"], sent["id"], sent["code"]) == ("error", 3, 429)
    assert counted(effects) == CountTelemetry(TelemetryResult.EARLY)


def test_a_report_after_the_interval_is_accepted_again(client: Client) -> None:
    client.report(2)
    client.now += 29.9
    client.report(3)  # refused: the interval runs from the last accepted report
    client.now += 0.1
    assert counted(client.report(4)).result is TelemetryResult.ACCEPTED


def test_a_clamped_report_is_accepted_as_clamped(client: Client) -> None:
    effects = client.report(2, {"gaps": 5000})
    assert answer(effects)["type"] == "reply"
    effect = counted(effects)
    assert effect.result is TelemetryResult.CLAMPED
    assert effect.report is not None and effect.report.gaps == MAX_COUNT


def test_an_invalid_report_is_bad_request_counted_and_does_not_use_the_interval(
    client: Client,
) -> None:
    effects = client.report(2, {"gaps": -1})
    sent = answer(effects)
    assert (sent["type"], sent["id"], sent["code"]) == ("error", 2, 400)
    assert counted(effects) == CountTelemetry(TelemetryResult.INVALID)
    assert counted(client.report(3)).result is TelemetryResult.ACCEPTED


def test_a_report_before_connect_is_not_connected_and_not_counted() -> None:
    client = Client()
    effects = client.report(2)
    assert answer(effects)["code"] == 401
    assert not [effect for effect in effects if isinstance(effect, CountTelemetry)]


def test_a_report_costs_a_command_token(client: Client) -> None:
    for request_id in range(2, 51):  # the connect took one of the 50
        client.send(op="ping", id=request_id)
    sent = answer(client.report(60))
    assert (sent["type"], sent["code"]) == ("error", 429)
