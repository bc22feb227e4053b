"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's second recommendation).

Hashing costs tens of milliseconds of CPU on purpose; callers run it in a thread so the event
loop keeps serving.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# A hash to verify against when the email is unknown, so that "no such user" and "wrong
# password" take the same time.
_DUMMY_HASH = _HASHER.hash("herald-dummy-password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether *password* matches *password_hash* (None: an unknown user, always False)."""
    return await asyncio.to_thread(_verify, password_hash, password)
