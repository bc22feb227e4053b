"""The open token's envelope (socketsrv/protocol/opening.py): its commands come back as the
JSON text of each, in order; anything else is refused with the reason."""

from __future__ import annotations

import json

import pytest

from socketsrv.protocol.opening import BadOpen, open_commands, open_token

CONNECT = {"op": "connect", "id": 1, "token": "a.b.c"}
SUBSCRIBE = {"op": "subscribe", "id": 2, "channel": "tag:x", "since": {"epoch": "e", "offset": 3}}


def test_the_commands_come_back_in_order_beside_the_encoding() -> None:
    offered = ["herald.v1.json", open_token([CONNECT, SUBSCRIBE])]
    commands = open_commands(offered)
    assert commands is not None
    assert [json.loads(c) for c in commands] == [CONNECT, SUBSCRIBE]


def test_no_open_token_means_no_commands() -> None:
    assert open_commands(["herald.v1.json"]) is None
    assert open_commands([]) is None


def test_the_token_is_made_of_characters_a_browser_accepts_in_a_subprotocol() -> None:
    token = open_token([CONNECT, SUBSCRIBE])
    separators = set('()<>@,;:\\"/[]?={} \t')
    assert token.isascii() and not separators & set(token)


@pytest.mark.parametrize(
    ("commands", "why"),
    [
        ([], "non-empty array"),
        ([SUBSCRIBE], "start with connect"),
        ([CONNECT, {"op": "unsubscribe", "id": 3, "channel": "tag:x"}], "other than"),
        ([CONNECT, "subscribe"], "not an object"),
    ],
)
def test_an_envelope_that_breaks_a_rule_is_refused_with_the_rule(
    commands: list[object], why: str
) -> None:
    with pytest.raises(BadOpen, match=why):
        open_commands([open_token(commands)])
