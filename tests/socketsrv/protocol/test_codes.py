"""socketsrv/protocol/codes.py: the close-code ranges and should_reconnect."""

from __future__ import annotations

import pytest

from socketsrv.protocol.codes import (
    CLOSE_TABLE,
    ERROR_TABLE,
    HINTED,
    CloseCode,
    ErrorCode,
    close_reason,
    retry_hint_s,
    should_reconnect,
)


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name.lower())
def test_should_reconnect_follows_the_table_for_every_close_code(code: CloseCode) -> None:
    assert should_reconnect(code) is CLOSE_TABLE[code].reconnect
    assert should_reconnect(int(code)) is CLOSE_TABLE[code].reconnect


@pytest.mark.parametrize("code", [4008, 4100, 4499])
def test_an_unknown_code_below_4500_means_reconnect(code: int) -> None:
    assert should_reconnect(code) is True


@pytest.mark.parametrize("code", [4501, 4600, 4999])
def test_an_unknown_code_from_4500_to_4999_means_stop(code: int) -> None:
    assert should_reconnect(code) is False


@pytest.mark.parametrize("code", [1001, 1005, 1006, 1008, 1012, 1015, 3000, 5000])
def test_other_unknown_codes_mean_reconnect(code: int) -> None:
    assert should_reconnect(code) is True


def test_every_close_code_is_in_the_table_and_only_normal_and_unauthorized_stop() -> None:
    assert set(CLOSE_TABLE) == set(CloseCode)
    stops = {code for code, info in CLOSE_TABLE.items() if not info.reconnect}
    assert stops == {CloseCode.NORMAL, CloseCode.UNAUTHORIZED}


def test_application_close_codes_sit_in_the_range_that_matches_their_reconnect_flag() -> None:
    for code, info in CLOSE_TABLE.items():
        if code >= 4000:
            assert info.reconnect is (code < 4500), code.name


def test_rfc_close_codes_are_ones_a_server_may_send() -> None:
    # RFC 6455 section 7.4.1: 1004 is reserved; 1005, 1006 and 1015 never go on the wire.
    for code in CLOSE_TABLE:
        if code < 4000:
            assert 1000 <= code <= 1014
            assert code not in (1004, 1005, 1006)


def test_close_reasons_fit_in_a_close_frame() -> None:
    # RFC 6455 section 5.5: a control frame payload is at most 125 bytes, 2 of them the code.
    for code, info in CLOSE_TABLE.items():
        assert len(info.reason.encode()) <= 123, code.name
    for code in HINTED:  # the hint is at most 9 digits (retry_hint_s reads no more)
        assert len(f"{CLOSE_TABLE[code].reason} retry_ms=999999999".encode()) <= 123


def test_every_error_code_is_in_the_table() -> None:
    assert set(ERROR_TABLE) == set(ErrorCode)
    for code, info in ERROR_TABLE.items():
        assert info.message, code.name
        assert info.meaning, code.name


def test_only_rate_limits_and_server_trouble_are_worth_retrying_unchanged() -> None:
    retry = {code for code, info in ERROR_TABLE.items() if info.retry}
    assert retry == {ErrorCode.TOO_MANY_REQUESTS, ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE}


# The reconnect hint (issue 12, item 4)


def test_the_closes_that_hit_a_crowd_at_once_carry_a_hint_and_only_they() -> None:
    assert {CloseCode.RESTART, CloseCode.STATE_LOST, CloseCode.REBALANCE} == HINTED
    assert all(CLOSE_TABLE[code].reconnect for code in HINTED)


@pytest.mark.parametrize("code", sorted(HINTED), ids=lambda c: c.name.lower())
def test_a_hinted_reason_ends_with_a_wait_drawn_within_the_spread(code: CloseCode) -> None:
    drawn: list[tuple[int, int]] = []

    def rand(low: int, high: int) -> int:
        drawn.append((low, high))
        return high

    reason = close_reason(code, 2.5, rand)
    assert reason == f"{CLOSE_TABLE[code].reason} retry_ms=2500"
    assert drawn == [(0, 2500)]
    assert retry_hint_s(reason) == 2.5
    for _ in range(50):
        assert 0 <= retry_hint_s(close_reason(code, 0.2)) <= 0.2


@pytest.mark.parametrize("code", sorted(set(CloseCode) - HINTED), ids=lambda c: c.name.lower())
def test_other_reasons_are_the_tables_and_ask_for_no_wait(code: CloseCode) -> None:
    assert close_reason(code, 5.0) == CLOSE_TABLE[code].reason
    assert retry_hint_s(close_reason(code, 5.0)) == 0.0


def test_a_spread_of_zero_hints_zero() -> None:
    assert close_reason(CloseCode.STATE_LOST, 0.0) == "state lost retry_ms=0"


@pytest.mark.parametrize(
    "reason",
    ["", "restart", "restart retry_ms=", "restart retry_ms=-5", "restart xretry_ms=99",
     "restart retry_ms=12ms", "restart retry_ms=1234567890", "restart retry_ms=1.5"],
)  # fmt: skip
def test_a_reason_without_a_well_formed_hint_asks_for_no_wait(reason: str) -> None:
    assert retry_hint_s(reason) == 0.0


def test_the_hint_is_read_whatever_the_words_around_it() -> None:
    assert retry_hint_s("retry_ms=7") == 0.007
    assert retry_hint_s("something new retry_ms=300 later") == 0.3
