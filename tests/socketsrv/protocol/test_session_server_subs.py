"""socketsrv/protocol/session.py: server-side subscriptions from a token's ``subs`` claim
(docs/protocol.md#server-side-subscriptions), without I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald_contract.envelope import StreamPosition
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import namespaces_from_toml
from socketsrv.errors import WrongState
from socketsrv.protocol.auth import MAX_SUBS, TokenVerifier
from socketsrv.protocol.codes import CloseCode, ErrorCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import (
    CloseWith,
    Effect,
    Limits,
    Recovery,
    Send,
    Session,
    SessionState,
    StartSubscribe,
)
from tests.support.raw_ws import parse_server_frame
from tests.support.tokens import SignToken

T0 = 1_800_000_000.0

FILE = """
[[namespace]]
name = "user"
subscribe = "user"
key = { type = "id" }

[[namespace]]
name = "feed"
subscribe = "token"
key = { type = "name", max_length = 20, chars = "a-z0-9_-" }

[[namespace]]
name = "question"
subscribe = "anyone"
key = { type = "id" }
"""


@pytest.fixture(scope="module")
def namespaces() -> Namespaces:
    return namespaces_from_toml(FILE)


def session(
    namespaces: Namespaces, verifier: TokenVerifier, limits: Limits | None = None
) -> Session:
    return Session(
        client_id="c-1",
        wire=WireFormat.JSON,
        limits=limits or Limits(),
        verifier=verifier,
        now=T0,
        namespaces=namespaces,
    )


def send(s: Session, **fields: Any) -> list[Effect]:
    return s.receive(json.dumps(fields), T0)


def message(effect: Effect) -> dict[str, Any]:
    assert isinstance(effect, Send), effect
    _, payload = parse_server_frame(effect.frame)
    return dict(json.loads(payload))


def pending(s: Session) -> bool:
    """Whether the connect reply waits (a call, so that mypy does not narrow it)."""
    return s.connect_pending


def starts(effects: list[Effect]) -> list[StartSubscribe]:
    assert all(isinstance(e, StartSubscribe) and e.server for e in effects), effects
    return [e for e in effects if isinstance(e, StartSubscribe)]


def test_a_token_naming_subs_gets_no_reply_until_each_is_subscribed(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    token = sign_token(sub="7", exp=T0 + 600, subs=["user:7", "feed:cats", "question:3"])
    started = starts(send(s, op="connect", id=1, token=token))
    assert [(e.request_id, e.channel.name, e.since) for e in started] == [
        (1, "user:7", None),
        (1, "feed:cats", None),
        (1, "question:3", None),
    ]
    assert s.state is SessionState.CONNECTED
    assert pending(s)
    assert s.subscriptions == s.server_subs == {"user:7", "feed:cats", "question:3"}
    assert not s.heartbeat_due()  # nothing goes ahead of the connect reply
    position = StreamPosition("e1", 4)
    assert s.server_subscribed("feed:cats", position, Recovery.NONE) is None
    assert s.server_subscribe_failed("question:3", ErrorCode.UNAVAILABLE) is None
    reply = s.server_subscribed("user:7", StreamPosition("e2", 9), Recovery.RECOVERED)
    assert reply is not None
    assert not pending(s)
    sent = message(reply)
    assert (sent["type"], sent["id"]) == ("reply", 1)
    assert sent["result"]["user"] == "7"
    assert sent["result"]["subs"] == {
        "user:7": {"epoch": "e2", "offset": 9, "recovery": "recovered"},
        "feed:cats": {"epoch": "e1", "offset": 4, "recovery": "none"},
        "question:3": {"error": {"code": 503, "message": "unavailable"}},
    }
    assert list(sent["result"]["subs"]) == ["user:7", "feed:cats", "question:3"]  # token order
    assert s.subscriptions == s.server_subs == {"user:7", "feed:cats"}


def test_the_connect_positions_go_to_their_channels_and_unknown_ones_are_ignored(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    token = sign_token(sub="7", exp=T0 + 600, subs=["user:7", "feed:cats"])
    since = {"user:7": {"epoch": "e2", "offset": 5}, "feed:dogs": {"epoch": "x", "offset": 1}}
    started = starts(send(s, op="connect", id=3, token=token, since=since))
    assert {e.channel.name: e.since for e in started} == {
        "user:7": StreamPosition("e2", 5),
        "feed:cats": None,
    }


@pytest.mark.parametrize(
    "since",
    [
        [],
        {"user:7": {"epoch": "", "offset": 1}},
        {"user:7": {"epoch": "e", "offset": -1}},
        {"user:7": 5},
        {"x" * 65: {"epoch": "e", "offset": 1}},
        {f"question:{i}": {"epoch": "e", "offset": 1} for i in range(1, 34)},
    ],
)
def test_a_malformed_connect_since_is_error_400_and_leaves_the_session_waiting(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken, since: object
) -> None:
    s = session(namespaces, verifier)
    token = sign_token(sub="7", exp=T0 + 600, subs=["user:7"])
    (effect,) = send(s, op="connect", id=1, token=token, since=since)
    sent = message(effect)
    assert (sent["type"], sent["code"], sent["id"]) == ("error", 400, 1)
    assert s.state is SessionState.AWAITING_CONNECT


def test_a_token_without_subs_is_answered_at_once_without_a_subs_field(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    (effect,) = send(s, op="connect", id=1, token=sign_token(sub="7", exp=T0 + 600))
    assert "subs" not in message(effect)["result"]
    assert not s.connect_pending


@pytest.mark.parametrize(
    "subs",
    [
        "user:7",
        {"user:7": True},
        [7],
        [""],
        ["x" * 65],
        ["question:é"],
        [f"question:{i}" for i in range(1, MAX_SUBS + 2)],
        ["nosuchkind:1"],
        ["question:abc"],
        ["feed:cats*"],
        ["user:8"],  # another user's
    ],
)
def test_a_bad_subs_claim_closes_with_4500(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken, subs: object
) -> None:
    s = session(namespaces, verifier)
    effects = send(s, op="connect", id=1, token=sign_token(sub="7", exp=T0 + 600, subs=subs))
    assert effects == [CloseWith(CloseCode.UNAUTHORIZED)]
    assert s.user_id is None and not s.subscriptions


def test_naming_a_token_kind_channel_in_subs_grants_it(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    started = starts(
        send(s, op="connect", id=1, token=sign_token(sub="7", exp=T0 + 600, subs=["feed:cats"]))
    )
    assert [e.channel.name for e in started] == ["feed:cats"]


def test_repeated_subs_are_subscribed_once(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    token = sign_token(sub="7", exp=T0 + 600, subs=["user:7", "user:7"])
    assert [e.channel.name for e in starts(send(s, op="connect", id=1, token=token))] == ["user:7"]


def test_subs_past_max_subscriptions_are_reported_430_in_the_reply(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier, Limits(max_subscriptions=1))
    token = sign_token(sub="7", exp=T0 + 600, subs=["user:7", "question:1"])
    (started,) = starts(send(s, op="connect", id=1, token=token))
    reply = s.server_subscribed(started.channel.name, StreamPosition("-", 0), Recovery.NONE)
    assert reply is not None
    assert message(reply)["result"]["subs"] == {
        "user:7": {"epoch": "-", "offset": 0, "recovery": "none"},
        "question:1": {"error": {"code": 430, "message": "too many subscriptions"}},
    }


def test_when_no_sub_can_start_the_reply_comes_at_once(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier, Limits(max_subscriptions=0))
    token = sign_token(sub="7", exp=T0 + 600, subs=["user:7"])
    (effect,) = send(s, op="connect", id=1, token=token)
    assert message(effect)["result"]["subs"] == {
        "user:7": {"error": {"code": 430, "message": "too many subscriptions"}}
    }
    assert not s.connect_pending


def connected(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken, **claims: Any
) -> Session:
    s = session(namespaces, verifier)
    for start in starts(
        send(s, op="connect", id=1, token=sign_token(sub="7", exp=T0 + 600, **claims))
    ):
        s.server_subscribed(start.channel.name, StreamPosition("e", 1), Recovery.NONE)
    assert not s.connect_pending
    return s


def test_a_client_may_not_unsubscribe_a_server_side_subscription(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = connected(namespaces, verifier, sign_token, subs=["user:7"])
    (effect,) = send(s, op="unsubscribe", id=2, channel="user:7")
    sent = message(effect)
    assert (sent["type"], sent["code"], sent["id"]) == ("error", 403, 2)
    assert "server-side" in sent["message"]
    assert s.subscriptions == {"user:7"}
    (effect,) = send(s, op="subscribe", id=3, channel="user:7")
    assert message(effect)["code"] == 409


def test_a_failed_server_side_subscription_may_be_subscribed_by_the_client(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    token = sign_token(sub="7", exp=T0 + 600, subs=["feed:cats"])
    assert len(starts(send(s, op="connect", id=1, token=token))) == 1
    assert s.server_subscribe_failed("feed:cats", ErrorCode.UNAVAILABLE) is not None
    (effect,) = send(s, op="subscribe", id=2, channel="feed:cats")
    assert isinstance(effect, StartSubscribe) and not effect.server


def test_a_refresh_keeps_the_server_side_subscriptions_and_checks_the_new_subs(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = connected(namespaces, verifier, sign_token, subs=["user:7"])
    fresh = sign_token(sub="7", exp=T0 + 900, subs=["feed:dogs"])
    (effect,) = send(s, op="refresh", id=2, token=fresh)
    assert message(effect)["result"] == {"expires_at": T0 + 900}
    assert s.server_subs == {"user:7"}  # until the next connect
    (effect,) = send(s, op="subscribe", id=3, channel="feed:dogs")
    assert isinstance(effect, StartSubscribe)  # the new subs grant it
    bad = sign_token(sub="7", exp=T0 + 900, subs=["user:8"])
    assert send(s, op="refresh", id=4, token=bad) == [CloseWith(CloseCode.UNAUTHORIZED)]


def test_reporting_a_channel_that_is_not_waited_for_is_a_wrong_state(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = connected(namespaces, verifier, sign_token, subs=["user:7"])
    with pytest.raises(WrongState):
        s.server_subscribed("user:7", StreamPosition("e", 1), Recovery.NONE)
