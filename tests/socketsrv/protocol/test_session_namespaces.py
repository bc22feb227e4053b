"""socketsrv/protocol/session.py with a namespace file: its kinds, and token grants."""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import namespaces_from_toml
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.codes import ErrorCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import Effect, Limits, Send, Session, StartSubscribe
from tests.support.raw_ws import parse_server_frame
from tests.support.tokens import SignToken

T0 = 1_800_000_000.0

FILE = """
[[namespace]]
name = "feed"
subscribe = "token"
key = { type = "name", max_length = 20, chars = "a-z0-9_-" }

[[namespace]]
name = "news"
subscribe = "anyone"
key = { type = "fixed", values = ["today"] }
"""


@pytest.fixture(scope="module")
def namespaces() -> Namespaces:
    return namespaces_from_toml(FILE)


def session(namespaces: Namespaces, verifier: TokenVerifier | None = None) -> Session:
    return Session(
        client_id="c-1",
        wire=WireFormat.JSON,
        limits=Limits(),
        verifier=verifier,
        now=T0,
        namespaces=namespaces,
    )


def send(s: Session, **fields: Any) -> list[Effect]:
    return s.receive(json.dumps(fields), T0)


def error_code(effects: list[Effect]) -> int | None:
    (effect,) = effects
    assert isinstance(effect, Send)
    _, payload = parse_server_frame(effect.frame)
    sent = json.loads(payload)
    return int(sent["code"]) if sent["type"] == "error" else None


def subscribing(effects: list[Effect]) -> str:
    (effect,) = effects
    assert isinstance(effect, StartSubscribe), effects
    return effect.channel.name


def test_the_files_kinds_are_the_only_channels(namespaces: Namespaces) -> None:
    s = session(namespaces)
    send(s, op="connect", id=1)
    assert subscribing(send(s, op="subscribe", id=2, channel="news:today")) == "news:today"
    refused = send(s, op="subscribe", id=3, channel="question:1")
    assert error_code(refused) == ErrorCode.INVALID_CHANNEL


def test_a_token_kind_needs_a_grant_in_the_channels_claim(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    anonymous = session(namespaces)
    send(anonymous, op="connect", id=1)
    assert error_code(send(anonymous, op="subscribe", id=2, channel="feed:a")) == 403
    granted = session(namespaces, verifier)
    token = sign_token(sub="42", exp=T0 + 600, channels=["feed:a", "feed:team-*"])
    send(granted, op="connect", id=1, token=token)
    assert subscribing(send(granted, op="subscribe", id=2, channel="feed:a")) == "feed:a"
    assert subscribing(send(granted, op="subscribe", id=3, channel="feed:team-7")) == "feed:team-7"
    assert error_code(send(granted, op="subscribe", id=4, channel="feed:b")) == 403


def test_a_refresh_replaces_the_grants_for_later_subscribes(
    namespaces: Namespaces, verifier: TokenVerifier, sign_token: SignToken
) -> None:
    s = session(namespaces, verifier)
    send(s, op="connect", id=1, token=sign_token(sub="42", exp=T0 + 600, channels=["feed:a"]))
    refreshed = sign_token(sub="42", exp=T0 + 900, channels=["feed:b"])
    assert error_code(send(s, op="refresh", id=2, token=refreshed)) is None
    assert error_code(send(s, op="subscribe", id=3, channel="feed:a")) == 403
    assert subscribing(send(s, op="subscribe", id=4, channel="feed:b")) == "feed:b"
