"""API keys: who may publish, compared in constant time.

A request carries its key in ``X-API-Key: <key>`` or ``Authorization: apikey <key>`` (the two
headers Centrifugo's server API takes). :meth:`ApiKeys.identify` hashes the presented key and
compares the digest with the digest of *every* configured key with
:func:`hmac.compare_digest`, without stopping at a match: the time taken depends neither on
which key matched nor on how much of a wrong key was right (hashing first also hides the
keys' lengths). Several keys are accepted at once, each with a name for logs and metrics, so
a key is rotated by adding the new one, moving the callers, then removing the old one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

AUTH_SCHEME = "apikey"


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """Why a request is not authenticated: *reason* is a metric label, *message* the answer."""

    reason: str
    message: str


MISSING = KeyProblem(
    "missing_key", "no API key: send X-API-Key: <key> or Authorization: apikey <key>"
)
MALFORMED = KeyProblem(
    "malformed_key", "the Authorization header must read 'apikey <key>' (or send X-API-Key)"
)
WRONG = KeyProblem("wrong_key", "the API key is not one this server accepts")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    """The accepted keys, by name; :meth:`authenticate` answers a request's headers."""

    def __init__(self, keys: Iterable[tuple[str, str]]) -> None:
        self._digests = tuple((name, _digest(key)) for name, key in keys)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._digests)

    def identify(self, presented: str) -> str | None:
        """The name of the key *presented* is, or None; compares against every key."""
        digest = _digest(presented)
        found: str | None = None
        for name, expected in self._digests:
            if hmac.compare_digest(digest, expected) and found is None:
                found = name
        return found

    def authenticate(self, x_api_key: str | None, authorization: str | None) -> str | KeyProblem:
        """The key name of a request with these two headers, or why it is refused.
        ``X-API-Key`` wins when both are sent."""
        if x_api_key:
            presented = x_api_key.strip()
        elif authorization:
            scheme, _, presented = authorization.strip().partition(" ")
            presented = presented.strip()
            if scheme.lower() != AUTH_SCHEME or not presented:
                return MALFORMED
        else:
            return MISSING
        name = self.identify(presented)
        return WRONG if name is None else name
