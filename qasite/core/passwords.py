"""Password hashing with argon2id (argon2-cffi; RFC 9106's second recommended profile by default).

Hashing costs tens of milliseconds of CPU (and ``argon2_memory_kib``) on purpose, so it runs
off the event loop, in a pool of its own of ``argon2_max_concurrency`` threads: the loop keeps
serving, and a flood of logins costs at most that many cores (issue 11, item 4: four clients
posting wrong passwords kept argon2 busy and a real login took 7.3 s). A hash or check waits
for a free slot at most ``argon2_queue_timeout_s``, with at most ``argon2_max_waiting`` others;
past either it raises :class:`PasswordsBusy`, which the API answers 503 with ``Retry-After``.
The cost is a setting (``argon2_time_cost``, ``argon2_memory_kib``) so that tests can make it
cheap; production keeps the defaults.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from qasite.core.settings import Settings

T = TypeVar("T")


class PasswordsBusy(Exception):
    """Every hashing slot stayed taken for the whole wait, or too many requests wait already."""

    def __init__(self, retry_after_s: float, why: str) -> None:
        self.retry_after_s = retry_after_s
        self.why = why
        super().__init__(f"password hashing is busy ({why}); retry in {retry_after_s:g} s")


class Passwords:
    def __init__(
        self,
        *,
        time_cost: int,
        memory_kib: int,
        max_concurrency: int = 2,
        queue_timeout_s: float = 2.0,
        max_waiting: int = 32,
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        # Verified against when the email is unknown, so that "no such user" and "wrong
        # password" take the same time.
        self._dummy = self._hasher.hash("herald-dummy-password")
        self._slots = asyncio.Semaphore(max_concurrency)
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="argon2")
        self._queue_timeout_s = queue_timeout_s
        self._max_waiting = max_waiting
        self.waiting = 0
        """Hashes and checks waiting for a slot now."""

    @classmethod
    def of(cls, settings: Settings) -> Passwords:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            max_concurrency=settings.argon2_max_concurrency,
            queue_timeout_s=settings.argon2_queue_timeout_s,
            max_waiting=settings.argon2_max_waiting,
        )

    @property
    def retry_after_s(self) -> int:
        """What a refused client is told to wait (``Retry-After``, whole seconds)."""
        return max(1, math.ceil(self._queue_timeout_s))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one hashing slot for the block; :class:`PasswordsBusy` if none frees in time."""
        if self._slots.locked() and self.waiting >= self._max_waiting:
            raise PasswordsBusy(self.retry_after_s, f"{self.waiting} already waiting")
        self.waiting += 1
        try:
            async with asyncio.timeout(self._queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise PasswordsBusy(self.retry_after_s, "no slot freed in time") from None
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        async with self.slot():
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            matched = self._hasher.verify(password_hash or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        return matched and password_hash is not None

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether *password* matches *password_hash* (None: an unknown user, always False)."""
        return await self._run(self._verify, password_hash, password)

    def close(self) -> None:
        """Stop the hashing threads (those running finish their hash; queued ones are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
