"""Keys and tokens for the protocol tests: JWTs are signed here with cryptography directly.

Signing without PyJWT keeps the tests independent of the library that verifies: a token is
``base64url(header).base64url(claims).base64url(signature)`` (RFC 7515 section 7.1).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from socketsrv.protocol.auth import TokenVerifier

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SignToken = Callable[..., str]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_jwt(claims: dict[str, Any], key: PrivateKey, header: dict[str, Any]) -> str:
    """A compact JWS of *claims* signed by *key* with the algorithm its type implies."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    data = signing_input.encode()
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(data)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 section 3.4
    else:
        signature = key.sign(data, PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture(scope="session")
def ed25519_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def verifier(ed25519_key: Ed25519PrivateKey) -> TokenVerifier:
    """A verifier holding only the public half of :func:`ed25519_key`."""
    return TokenVerifier(public_pem(ed25519_key))


@pytest.fixture(scope="session")
def verifier_for() -> Callable[[PrivateKey], TokenVerifier]:
    """``verifier_for(key)``: a verifier holding the public half of *key*."""
    return lambda key: TokenVerifier(public_pem(key))


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
