"""socketsrv/protocol/auth.py: who a connection token authenticates, with the clock passed in."""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable
from typing import Any

import jwt as jwt_module
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from socketsrv.protocol import auth as auth_module
from socketsrv.protocol.auth import (
    DEFAULT_ALGORITHMS,
    Identity,
    TokenExpired,
    TokenInvalid,
    TokenRejected,
    TokenVerifier,
)
from tests.support.tokens import SignToken, b64url, segment

NOW = 1_800_000_000.0
LATER = NOW + 300

VerifierFor = Callable[[Any], TokenVerifier]


def assert_invalid(verifier: TokenVerifier, token: str, now: float = NOW) -> TokenInvalid:
    with pytest.raises(TokenInvalid) as caught:
        verifier.verify(token, now)
    return caught.value


# Accepted tokens


def test_a_valid_eddsa_token_gives_the_user_and_the_expiry(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=int(LATER))
    assert verifier.verify(token, NOW) == Identity("42", LATER)


def test_a_fractional_expiry_is_kept(verifier: TokenVerifier, sign_token: SignToken) -> None:
    assert verifier.verify(sign_token(sub="42", exp=LATER + 0.5), NOW).expires_at == LATER + 0.5


def test_an_es256_token_is_accepted_with_a_p256_public_key(
    sign_token: SignToken, verifier_for: VerifierFor
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_token(key=key, alg="ES256", sub="7", exp=LATER)
    assert verifier_for(key).verify(token, NOW) == Identity("7", LATER)


def test_an_rs256_token_is_accepted_with_an_rsa_public_key(
    sign_token: SignToken, verifier_for: VerifierFor
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign_token(key=key, alg="RS256", sub="7", exp=LATER)
    assert verifier_for(key).verify(token, NOW) == Identity("7", LATER)


def test_only_asymmetric_algorithms_are_accepted_by_default() -> None:
    assert set(DEFAULT_ALGORITHMS) == {"EdDSA", "ES256", "RS256"}


def test_the_largest_user_id_is_accepted(verifier: TokenVerifier, sign_token: SignToken) -> None:
    sub = str(2**63 - 1)
    assert verifier.verify(sign_token(sub=sub, exp=LATER), NOW).user_id == sub


# Expiry


def test_a_token_past_its_expiry_and_leeway_is_expired(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=NOW - verifier.leeway_s)
    with pytest.raises(TokenExpired):
        verifier.verify(token, NOW)


def test_a_token_within_the_leeway_is_still_accepted(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=NOW - verifier.leeway_s + 1)
    assert verifier.verify(token, NOW).user_id == "42"


def test_expiry_is_judged_by_the_clock_passed_in(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=LATER)
    assert verifier.verify(token, LATER).user_id == "42"
    with pytest.raises(TokenExpired):
        verifier.verify(token, LATER + verifier.leeway_s)


def test_an_expired_token_with_a_bad_signature_is_invalid_not_expired(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(key=Ed25519PrivateKey.generate(), sub="42", exp=NOW - 3600)
    assert_invalid(verifier, token)


# Invalid tokens


def test_a_token_signed_by_another_key_is_invalid(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    assert_invalid(verifier, sign_token(key=Ed25519PrivateKey.generate(), sub="42", exp=LATER))


def test_a_token_whose_claims_were_changed_is_invalid(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    header, _, signature = sign_token(sub="42", exp=LATER).split(".")
    forged = segment({"sub": "1", "exp": LATER})
    assert_invalid(verifier, f"{header}.{forged}.{signature}")


def test_an_unsigned_token_is_invalid(verifier: TokenVerifier) -> None:
    token = f"{segment({'alg': 'none'})}.{segment({'sub': '42', 'exp': LATER})}."
    assert_invalid(verifier, token)


def test_an_hmac_token_keyed_with_the_public_key_is_invalid(verifier: TokenVerifier) -> None:
    # The classic algorithm confusion: HS256 with the public PEM as the shared secret.
    signing_input = f"{segment({'alg': 'HS256'})}.{segment({'sub': '42', 'exp': LATER})}"
    mac = hmac.new(verifier.public_key_pem.encode(), signing_input.encode(), hashlib.sha256)
    assert_invalid(verifier, f"{signing_input}.{b64url(mac.digest())}")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "ES512", "Ed25519"])
def test_a_forged_header_naming_another_algorithm_is_invalid(
    verifier: TokenVerifier, sign_token: SignToken, alg: str
) -> None:
    _, claims, signature = sign_token(sub="42", exp=LATER).split(".")
    assert_invalid(verifier, f"{segment({'alg': alg})}.{claims}.{signature}")


@pytest.mark.parametrize(
    "token", ["", "x", "a.b.c", "a.b", "...", "eyJ.eyJ.x", "not a token at all"]
)
def test_garbage_is_invalid(verifier: TokenVerifier, token: str) -> None:
    assert_invalid(verifier, token)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": LATER},
        {"sub": "42"},
        {"sub": "42", "exp": None},
        {"sub": 42, "exp": LATER},
        {"sub": "", "exp": LATER},
        {"sub": "bob", "exp": LATER},
        {"sub": "0", "exp": LATER},
        {"sub": "-1", "exp": LATER},
        {"sub": "042", "exp": LATER},
        {"sub": " 42", "exp": LATER},
        {"sub": str(2**63), "exp": LATER},
        {"sub": "\u0664\u0662", "exp": LATER},  # Arabic-Indic digits
        {"sub": "42", "exp": "soon"},
        {"sub": "42", "exp": True},
        {"sub": "42", "exp": [LATER]},
    ],
    ids=[
        "no-sub",
        "no-exp",
        "null-exp",
        "int-sub",
        "empty-sub",
        "name-sub",
        "zero-sub",
        "negative-sub",
        "leading-zero-sub",
        "space-sub",
        "sub-over-2^63-1",
        "non-ascii-digits-sub",
        "string-exp",
        "bool-exp",
        "list-exp",
    ],
)
def test_missing_or_malformed_claims_are_invalid(
    verifier: TokenVerifier, sign_token: SignToken, claims: dict[str, Any]
) -> None:
    assert_invalid(verifier, sign_token(**claims))


def test_a_superscript_digit_sub_is_invalid_not_a_crash(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    assert_invalid(verifier, sign_token(sub="\u00b2", exp=LATER))


def test_a_nan_expiry_is_invalid(verifier: TokenVerifier, sign_token: SignToken) -> None:
    assert_invalid(verifier, sign_token(sub="42", exp=math.nan))


# Audience and issuer


@pytest.fixture
def strict_verifier(verifier: TokenVerifier) -> TokenVerifier:
    return TokenVerifier(verifier.public_key_pem, audience="herald", issuer="https://qa.example")


def test_audience_and_issuer_are_checked_when_configured(
    strict_verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=LATER, aud="herald", iss="https://qa.example")
    assert strict_verifier.verify(token, NOW).user_id == "42"


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://qa.example"},
        {"aud": "herald"},
        {"aud": "other", "iss": "https://qa.example"},
        {"aud": "herald", "iss": "https://evil.example"},
    ],
    ids=["no-aud", "no-iss", "wrong-aud", "wrong-iss"],
)
def test_a_missing_or_wrong_audience_or_issuer_is_invalid(
    strict_verifier: TokenVerifier, sign_token: SignToken, claims: dict[str, str]
) -> None:
    assert_invalid(strict_verifier, sign_token(sub="42", exp=LATER, **claims))


def test_audience_and_issuer_are_ignored_when_not_configured(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=LATER, aud="anything", iss="anyone")
    assert verifier.verify(token, NOW).user_id == "42"


# The exception tree


def test_both_rejections_are_token_rejected_with_a_reason(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    invalid = assert_invalid(verifier, "a.b.c")
    assert isinstance(invalid, TokenRejected)
    assert str(invalid) == f"token rejected: {invalid.why}"
    assert issubclass(TokenExpired, TokenRejected)
    assert not issubclass(TokenExpired, TokenInvalid)


def test_a_rejection_does_not_echo_the_token(verifier: TokenVerifier) -> None:
    secretish = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiI0MiJ9.c2VjcmV0"
    assert secretish not in str(assert_invalid(verifier, secretish))


# The key


@pytest.mark.parametrize(
    "pem", ["", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_a_configured_key_that_is_not_a_public_key_fails_at_start_up(pem: str) -> None:
    with pytest.raises(ValueError, match="key"):
        TokenVerifier(pem)


def test_the_same_key_verifies_many_tokens_without_parsing_it_again(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    key = verifier._key
    for user in range(1, 4):
        assert verifier.verify(sign_token(sub=str(user), exp=LATER), NOW).user_id == str(user)
    assert verifier._key is key


def test_a_token_verified_once_is_not_checked_again_until_it_expires(
    verifier: TokenVerifier, sign_token: SignToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(verifier.public_key_pem)  # remembers nothing yet
    token = sign_token(sub="42", exp=int(LATER))
    first = verifier.verify(token, NOW)
    checks: list[str] = []
    monkeypatch.setattr(jwt_module, "decode", lambda *a, **k: checks.append("decode"))
    assert verifier.verify(token, NOW + 1) is first
    assert checks == []
    monkeypatch.undo()
    with pytest.raises(TokenExpired):
        verifier.verify(token, LATER + verifier.leeway_s)
    with pytest.raises(TokenExpired):  # forgotten, then checked again: still expired
        verifier.verify(token, LATER + verifier.leeway_s)


def test_an_invalid_token_is_checked_every_time(verifier: TokenVerifier) -> None:
    for _ in range(2):
        assert_invalid(verifier, "not.a.token")


def test_the_verified_tokens_remembered_are_bounded(
    verifier: TokenVerifier, sign_token: SignToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(verifier.public_key_pem)  # remembers nothing yet
    monkeypatch.setattr(auth_module, "VERIFIED_CACHE_ENTRIES", 3)
    tokens = [sign_token(sub=str(user), exp=int(LATER)) for user in range(1, 6)]
    for token in tokens:
        verifier.verify(token, NOW)
    assert list(verifier._verified) == tokens[2:]


# The channels claim (docs/namespaces.md#who-may-subscribe)


def test_the_channels_claim_is_carried_in_the_identity(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    token = sign_token(sub="42", exp=LATER, channels=["feed:a", "feed:team-*"])
    assert verifier.verify(token, NOW).channels == ("feed:a", "feed:team-*")
    assert verifier.verify(sign_token(sub="42", exp=LATER), NOW).channels == ()


@pytest.mark.parametrize(
    "claim",
    ["feed:a", ["feed:a", 7], [""], ["x" * 65], ["feed:é"], ["feed:a"] * 129, {"feed:a": 1}],
)
def test_a_malformed_channels_claim_makes_the_token_invalid(
    verifier: TokenVerifier, sign_token: SignToken, claim: object
) -> None:
    error = assert_invalid(verifier, sign_token(sub="42", exp=LATER, channels=claim))
    assert "channels" in str(error)
