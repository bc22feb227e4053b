"""Access tokens revoked before they expire: a deny list keyed by the token's id (issue 11,
item 14).

An access token is a JWT checked without the database, so until this list it stayed valid for
its whole ``access_token_ttl_s`` after a logout. Logout now puts the token's ``jti`` here for
the token's remaining lifetime (an entry outlives the token by nothing: after ``exp`` the
token is refused anyway); every authenticated request asks :meth:`DenyList.is_revoked`.

    revoked = deny_list_for(settings)            # Redis when redis_url is set, else in-process
    await revoked.revoke(jti, expires_at=exp, now=time.time())
    await revoked.is_revoked(jti)                # on every authenticated request

:class:`RedisDenyList` (one ``SET key 1 PX <remaining>`` per logout, one ``EXISTS`` per
request, shared by every Q&A worker) also writes each entry to its in-process twin, and
answers from that twin when Redis fails, saying so in the log once a minute: this worker's own
logouts still hold, others' are missed until Redis answers again.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from herald_contract.cluster_client import any_command_client
from qasite.core.settings import Settings

log = logging.getLogger(__name__)

MAX_MEMORY_ENTRIES = 100_000
"""Entries the in-process list keeps at most; past it the expired go, then the soonest to."""


class DenyList(Protocol):
    async def revoke(self, token_id: str, *, expires_at: float, now: float) -> None:
        """Refuse the token *token_id* until *expires_at* (its ``exp``)."""
        ...

    async def is_revoked(self, token_id: str, *, now: float) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryDenyList:
    """The in-process twin: token id -> expiry, at most :data:`MAX_MEMORY_ENTRIES`."""

    def __init__(self, max_entries: int = MAX_MEMORY_ENTRIES) -> None:
        self._until: dict[str, float] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._until)

    async def revoke(self, token_id: str, *, expires_at: float, now: float) -> None:
        if expires_at <= now:
            return
        self._until[token_id] = expires_at
        if len(self._until) > self._max_entries:
            self._until = {k: t for k, t in self._until.items() if t > now}
            while len(self._until) > self._max_entries:
                del self._until[min(self._until, key=self._until.__getitem__)]

    async def is_revoked(self, token_id: str, *, now: float) -> bool:
        until = self._until.get(token_id)
        if until is None:
            return False
        if until <= now:
            del self._until[token_id]
            return False
        return True

    async def aclose(self) -> None:
        self._until.clear()


class RedisDenyList:
    """The list in Redis keys ``<prefix><token id>`` that expire with their tokens."""

    def __init__(
        self, client: Redis | RedisCluster, prefix: str, *, warn_every_s: float = 60.0
    ) -> None:
        self._client = client
        self._prefix = prefix
        self.local = MemoryDenyList()
        self._warn_every_s = warn_every_s
        self._warned_at = -warn_every_s
        self._failures = 0

    async def revoke(self, token_id: str, *, expires_at: float, now: float) -> None:
        await self.local.revoke(token_id, expires_at=expires_at, now=now)
        remaining_ms = int((expires_at - now) * 1000)
        if remaining_ms <= 0:
            return
        try:
            await self._client.set(self._prefix + token_id, b"1", px=remaining_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)

    async def is_revoked(self, token_id: str, *, now: float) -> bool:
        if await self.local.is_revoked(token_id, now=now):
            return True
        try:
            return bool(await self._client.exists(self._prefix + token_id))
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)
            return False

    def _warn(self, exc: BaseException) -> None:
        self._failures += 1
        if time.monotonic() - self._warned_at >= self._warn_every_s:
            self._warned_at = time.monotonic()
            log.warning(
                "access-token deny list: Redis failed %d time(s) (last: %s); this process's "
                "logouts still hold, other workers' are not seen",
                self._failures,
                exc,
            )
            self._failures = 0

    async def aclose(self) -> None:
        await self._client.aclose()
        await self.local.aclose()


def deny_list_for(settings: Settings) -> DenyList:
    """In Redis under the key prefix when ``redis_url`` is set (every worker sees every
    logout), else in this process."""
    if settings.redis_url is None:
        return MemoryDenyList()
    client = any_command_client(settings.redis_url, socket_timeout_s=settings.publish_timeout_s)
    return RedisDenyList(client, f"{settings.key_prefix}:qa:revoked:")
