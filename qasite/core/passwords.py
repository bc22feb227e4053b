"""Password hashing with argon2id (argon2-cffi; RFC 9106's second recommended profile by default).

Hashing costs tens of milliseconds of CPU on purpose, so it runs in a thread and the event
loop keeps serving. The cost is a setting (``argon2_time_cost``, ``argon2_memory_kib``) so that
tests can make it cheap; production keeps the defaults.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from qasite.core.settings import Settings


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified against when the email is unknown, so that "no such user" and "wrong
        # password" take the same time.
        self._dummy = self._hasher.hash("herald-dummy-password")

    @classmethod
    def of(cls, settings: Settings) -> Passwords:
        return cls(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            matched = self._hasher.verify(password_hash or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return matched and password_hash is not None

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether *password* matches *password_hash* (None: an unknown user, always False)."""
        return await asyncio.to_thread(self._verify, password_hash, password)
