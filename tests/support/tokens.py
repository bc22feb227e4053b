"""Keys and connection tokens for the tests: JWTs are signed here with cryptography directly.

Signing without PyJWT keeps the tests independent of the library that verifies: a token is
``base64url(header).base64url(claims).base64url(signature)`` (RFC 7515 section 7.1).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SignToken = Callable[..., str]
"""The ``sign_token`` fixture of tests/socketsrv/protocol/conftest.py."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(fields: dict[str, Any]) -> str:
    """One base64url JSON segment of a compact JWS (RFC 7515 section 7.1)."""
    return b64url(json.dumps(fields).encode())


def public_pem_of(key: PrivateKey) -> str:
    """The public half of *key* as PEM, the form the worker's settings take."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_jwt(claims: dict[str, Any], key: PrivateKey, header: dict[str, Any]) -> str:
    """A compact JWS of *claims* signed by *key* with the algorithm its type implies."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    data = signing_input.encode()
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(data)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 section 3.4
    else:
        signature = key.sign(data, PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class TokenIssuer:
    """Signs connection tokens the way the Q&A core does (EdDSA); the worker gets the key."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_pem(self) -> str:
        return public_pem_of(self.key)

    def token(self, user_id: str, *, expires_in_s: float = 3600.0, **claims: Any) -> str:
        """A token for *user_id* that expires *expires_in_s* from now on the wall clock."""
        payload = {"sub": user_id, "exp": time.time() + expires_in_s, **claims}
        return sign_jwt(payload, self.key, {"alg": "EdDSA", "typ": "JWT"})
