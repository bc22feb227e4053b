"""Keys and tokens for the protocol tests; the signing itself is tests/support/tokens.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from socketsrv.protocol.auth import TokenVerifier
from tests.support.tokens import PrivateKey, SignToken, public_pem_of, sign_jwt


@pytest.fixture(scope="session")
def ed25519_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def verifier(ed25519_key: Ed25519PrivateKey) -> TokenVerifier:
    """A verifier holding only the public half of :func:`ed25519_key`."""
    return TokenVerifier(public_pem_of(ed25519_key))


@pytest.fixture(scope="session")
def verifier_for() -> Callable[[PrivateKey], TokenVerifier]:
    """``verifier_for(key)``: a verifier holding the public half of *key*."""
    return lambda key: TokenVerifier(public_pem_of(key))


@pytest.fixture(scope="session")
def sign_token(ed25519_key: Ed25519PrivateKey) -> SignToken:
    """``sign_token(sub="42", exp=..., key=..., alg=..., **claims)``: an EdDSA JWT by default."""

    def sign(
        *,
        key: PrivateKey | None = None,
        alg: str = "EdDSA",
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        chosen = ed25519_key if key is None else key
        return sign_jwt(claims, chosen, header or {"alg": alg, "typ": "JWT"})

    return sign
