"""socketsrv/protocol/codes.py: the close-code ranges and should_reconnect."""

from __future__ import annotations

import pytest

from socketsrv.protocol.codes import (
    CLOSE_TABLE,
    ERROR_TABLE,
    CloseCode,
    ErrorCode,
    should_reconnect,
)


@pytest.mark.parametrize("code", list(CloseCode), ids=lambda c: c.name.lower())
def test_should_reconnect_follows_the_table_for_every_close_code(code: CloseCode) -> None:
    assert should_reconnect(code) is CLOSE_TABLE[code].reconnect
    assert should_reconnect(int(code)) is CLOSE_TABLE[code].reconnect


@pytest.mark.parametrize("code", [4007, 4100, 4499])
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
    assert len(b"restart retry_ms=4294967295") <= 123


def test_every_error_code_is_in_the_table() -> None:
    assert set(ERROR_TABLE) == set(ErrorCode)
    for code, info in ERROR_TABLE.items():
        assert info.message, code.name
        assert info.meaning, code.name


def test_only_rate_limits_and_server_trouble_are_worth_retrying_unchanged() -> None:
    retry = {code for code, info in ERROR_TABLE.items() if info.retry}
    assert retry == {ErrorCode.TOO_MANY_REQUESTS, ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE}
