"""Connection tokens: JWTs signed by the Q&A core, verified here with its public key.

A token is a JWT (RFC 7519) with ``sub`` (the user id, a decimal string as in ``user:<id>``)
and ``exp`` (expiry, seconds since the epoch); ``aud`` and ``iss`` are checked when
configured. An optional ``channels`` claim lists the channels of ``subscribe = "token"`` kinds
the connection may read (docs/namespaces.md#who-may-subscribe); an optional ``subs`` claim
lists the channels the worker subscribes at connect (server-side subscriptions,
docs/protocol.md#server-side-subscriptions). Only asymmetric algorithms
are accepted (EdDSA, ES256, RS256 by default), so the fleet holds a public key and cannot mint
tokens. The clock is passed in, so expiry is tested
without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from herald_contract.channels import MAX_CHANNEL_LENGTH, MAX_ID
from socketsrv.errors import TokenExpired, TokenInvalid, TokenRejected

__all__ = [
    "DEFAULT_ALGORITHMS",
    "MAX_SUBS",
    "Identity",
    "TokenExpired",
    "TokenInvalid",
    "TokenRejected",
    "TokenVerifier",
]

DEFAULT_ALGORITHMS = ("EdDSA", "ES256", "RS256")
MAX_GRANTS = 128
"""The most entries a token's ``channels`` claim may hold (as ``max_subscriptions``)."""
MAX_SUBS = 32
VERIFIED_CACHE_ENTRIES = 4096
"""Tokens remembered as verified (the oldest forgotten first): a client that reconnects to the
same worker with the same token (a network blip, a reconnect storm's retries) is not checked
again; an Ed25519 check cost 5% of a reconnect storm's worker CPU."""
"""The most channels a token's ``subs`` claim may name: each is subscribed (a history read)
at every connect, so the claim is kept to a page's common subscriptions."""


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    expires_at: float
    """``exp``: seconds since the epoch. The session closes the connection with 4004 once
    ``expires_at + leeway_s`` has passed, the same leeway :meth:`TokenVerifier.verify` gives."""
    channels: tuple[str, ...] = ()
    """The ``channels`` claim: channel names, or ``<kind>:<prefix>*`` patterns, granted to
    the connection (herald_contract.namespaces.grants_channel)."""
    subs: tuple[str, ...] = ()
    """The ``subs`` claim: exact channel names the worker subscribes at connect, each once,
    in the claim's order (the session parses them against its namespaces)."""


def _families_of(key: object) -> tuple[str, ...]:
    """The JWS algorithm name prefixes (RFC 7518, RFC 8037) a public key of this type verifies."""
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        return ("EdDSA",)
    if isinstance(key, EllipticCurvePublicKey):
        return ("ES",)
    if isinstance(key, RSAPublicKey):
        return ("RS", "PS")
    return ()


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    public_key_pem: str
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    audience: str | None = None
    issuer: str | None = None
    leeway_s: float = 5.0
    _key: Any = field(init=False, repr=False, compare=False)
    """The parsed public key: parsing the PEM for every token cost 7% of a reconnect storm's
    CPU (bench/results/ANALYSIS.md). A PEM that is not a public key fails here, at start-up."""
    _usable: list[str] = field(init=False, repr=False, compare=False)
    """The configured algorithms this key's type can verify: a token whose header names
    another one is invalid before PyJWT ever pairs the key with the wrong algorithm."""
    _verified: dict[str, Identity] = field(init=False, repr=False, compare=False)
    """Tokens found valid, by their exact text, until they expire (VERIFIED_CACHE_ENTRIES):
    the same bytes carry the same signature, so the answer cannot change but for ``exp``."""

    def __post_init__(self) -> None:
        try:
            key = load_pem_public_key(self.public_key_pem.encode())
        except ValueError as exc:
            raise ValueError(f"the JWT public key is not a PEM public key ({exc})") from None
        usable = [a for a in self.algorithms if a.startswith(_families_of(key))]
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_usable", usable)
        object.__setattr__(self, "_verified", {})

    def verify(self, token: str, now: float) -> Identity:
        """Return who *token* authenticates at time *now*; raise :class:`TokenRejected`."""
        cache = self._verified
        known = cache.get(token)
        if known is not None:
            if known.expires_at + self.leeway_s <= now:
                del cache[token]
                raise TokenExpired("exp has passed")
            return known
        identity = self._check(token, now)
        if len(cache) >= VERIFIED_CACHE_ENTRIES:
            del cache[next(iter(cache))]  # the oldest
        cache[token] = identity
        return identity

    def _check(self, token: str, now: float) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._usable,
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["sub", "exp"],
                    "verify_exp": False,
                    "verify_aud": self.audience is not None,
                    "verify_iss": self.issuer is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(type(exc).__name__) from None
        sub, exp = claims["sub"], claims["exp"]
        if not isinstance(sub, str) or not (sub.isascii() and sub.isdigit()):
            raise TokenInvalid("sub must be a user id (decimal string)")
        if not 1 <= int(sub) <= MAX_ID:
            raise TokenInvalid("sub must be a user id (decimal string)")
        if sub != str(int(sub)):
            raise TokenInvalid("sub must not have leading zeros")
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
            raise TokenInvalid("exp must be a number")
        if exp + self.leeway_s <= now:
            raise TokenExpired("exp has passed")
        return Identity(
            sub, float(exp), _grants(claims.get("channels", [])), _subs(claims.get("subs", []))
        )


def _grants(claim: object) -> tuple[str, ...]:
    """The ``channels`` claim as a tuple; raise :class:`TokenInvalid` if it is not a list of
    at most :data:`MAX_GRANTS` strings of ASCII, each at most a channel name long."""
    if (
        not isinstance(claim, list)
        or len(claim) > MAX_GRANTS
        or not all(
            isinstance(g, str) and 0 < len(g) <= MAX_CHANNEL_LENGTH and g.isascii() for g in claim
        )
    ):
        raise TokenInvalid(f"channels must be a list of at most {MAX_GRANTS} channel names")
    return tuple(claim)


def _subs(claim: object) -> tuple[str, ...]:
    """The ``subs`` claim as a tuple without repeats; raise :class:`TokenInvalid` if it is not
    a list of at most :data:`MAX_SUBS` strings of ASCII, each at most a channel name long."""
    if (
        not isinstance(claim, list)
        or len(claim) > MAX_SUBS
        or not all(
            isinstance(c, str) and 0 < len(c) <= MAX_CHANNEL_LENGTH and c.isascii() for c in claim
        )
    ):
        raise TokenInvalid(f"subs must be a list of at most {MAX_SUBS} channel names")
    return tuple(dict.fromkeys(claim))
