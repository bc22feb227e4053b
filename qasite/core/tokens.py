"""The tokens the Q&A core issues.

* **Access tokens**: short-lived JWTs (HS256 with ``access_token_secret``, ``typ`` =
  ``access``, a random ``jti``) that authenticate API calls; only this service checks them.
  Logout puts the ``jti`` on a deny list until ``exp`` (:mod:`qasite.core.revocation`).
* **Refresh tokens** and **verification tokens**: random opaque strings; the database keeps
  only their SHA-256, so a leaked table does not leak usable tokens.
* **Connection tokens**: short-lived JWTs signed with the Ed25519 private key (``EdDSA``),
  with the claims socketsrv's ``TokenVerifier`` requires (``sub`` = the user id as a decimal
  string, ``exp``; ``aud``/``iss`` when configured), verified by the fleet with the public key
  only (docs/protocol.md#tokens). ``subs`` names the user's inbox channel ``user:<id>``: the
  worker subscribes it during the connect command, so a reconnecting page gets what its inbox
  missed with the connect reply (docs/protocol.md#server-side-subscriptions).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import jwt

from qasite.core.settings import Settings

ACCESS_ALGORITHM = "HS256"
SOCKET_ALGORITHM = "EdDSA"


class BadToken(Exception):
    """The access token is invalid or expired (answered 401)."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"bad access token: {why}")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    token_id: str | None
    """The ``jti``; None in tokens issued before tokens had one (they cannot be revoked)."""
    expires_at: float


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: float


def opaque_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _secret(settings: Settings) -> str:
    if not settings.access_token_secret:
        raise RuntimeError("access_token_secret is not set: build settings with keys.with_secrets")
    return settings.access_token_secret


def issue_access_token(settings: Settings, user_id: int, now: float) -> IssuedToken:
    expires_at = now + settings.access_token_ttl_s
    claims = {
        "sub": str(user_id),
        "typ": "access",
        "iat": int(now),
        "exp": int(expires_at),
        "jti": secrets.token_urlsafe(16),
    }
    return IssuedToken(jwt.encode(claims, _secret(settings), ACCESS_ALGORITHM), int(expires_at))


def read_access_token(settings: Settings, token: str, now: float) -> int:
    """The user id *token* authenticates at *now*; raise :class:`BadToken`."""
    return read_access_claims(settings, token, now).user_id


def read_access_claims(settings: Settings, token: str, now: float) -> AccessClaims:
    """What *token* says at *now* (not whether it was revoked); raise :class:`BadToken`."""
    try:
        claims = jwt.decode(
            token,
            _secret(settings),
            algorithms=[ACCESS_ALGORITHM],
            options={"require": ["sub", "exp", "typ"], "verify_exp": False},
        )
    except jwt.PyJWTError as exc:
        raise BadToken(type(exc).__name__) from None
    sub, exp = claims.get("sub"), claims.get("exp")
    if claims.get("typ") != "access" or not isinstance(sub, str) or not sub.isdigit():
        raise BadToken("not an access token")
    if not isinstance(exp, int | float) or exp <= now:
        raise BadToken("expired")
    jti = claims.get("jti")
    return AccessClaims(int(sub), jti if isinstance(jti, str) and jti else None, float(exp))


def issue_socket_token(settings: Settings, user_id: int, now: float) -> IssuedToken:
    """A connection token for the socket fleet (see the module docstring)."""
    if not settings.socket_private_key_pem:
        raise RuntimeError("socket_private_key_pem is not set: build settings with with_secrets")
    expires_at = int(now + settings.socket_token_ttl_s)
    claims: dict[str, object] = {
        "sub": str(user_id),
        "iat": int(now),
        "exp": expires_at,
        "subs": [f"user:{user_id}"],
    }
    if settings.socket_token_audience is not None:
        claims["aud"] = settings.socket_token_audience
    if settings.socket_token_issuer is not None:
        claims["iss"] = settings.socket_token_issuer
    token = jwt.encode(claims, settings.socket_private_key_pem, SOCKET_ALGORITHM)
    return IssuedToken(token, expires_at)
