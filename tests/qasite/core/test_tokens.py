"""Tokens (qasite/core/tokens.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qasite.core.keys import with_secrets
from qasite.core.settings import Settings
from qasite.core.tokens import (
    BadToken,
    issue_access_token,
    issue_socket_token,
    read_access_token,
)
from socketsrv.protocol.auth import TokenExpired, TokenInvalid, TokenVerifier


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return with_secrets(
        Settings(data_dir=tmp_path, socket_token_audience="herald", socket_token_issuer="qa")
    )


def test_an_access_token_names_its_user_until_it_expires(settings: Settings) -> None:
    now = time.time()
    token = issue_access_token(settings, 42, now).token
    assert read_access_token(settings, token, now + 10) == 42
    with pytest.raises(BadToken, match="expired"):
        read_access_token(settings, token, now + settings.access_token_ttl_s + 1)


def test_a_token_signed_with_another_secret_or_of_another_kind_is_refused(
    settings: Settings,
) -> None:
    now = time.time()
    other = settings.replace(access_token_secret="another secret of enough length!")
    with pytest.raises(BadToken):
        read_access_token(settings, issue_access_token(other, 1, now).token, now)
    with pytest.raises(BadToken):
        read_access_token(settings, issue_socket_token(settings, 1, now).token, now)


def test_a_connection_token_carries_audience_and_issuer_for_the_fleet(settings: Settings) -> None:
    now = time.time()
    issued = issue_socket_token(settings, 7, now)
    assert settings.socket_public_key_pem is not None
    verifier = TokenVerifier(settings.socket_public_key_pem, audience="herald", issuer="qa")
    identity = verifier.verify(issued.token, now)
    assert (identity.user_id, identity.subs) == ("7", ("user:7",))  # the inbox, server-side
    with pytest.raises(TokenInvalid):
        TokenVerifier(settings.socket_public_key_pem, audience="elsewhere").verify(
            issued.token, now
        )
    with pytest.raises(TokenExpired):
        verifier.verify(issued.token, now + settings.socket_token_ttl_s + 60)
