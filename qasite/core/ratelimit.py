"""Sliding-window attempt counters: in this process, or shared by every worker through Redis.

A window remembers the time of each recorded attempt under a key for ``window_s``; an attempt
is allowed while fewer than ``limit`` were recorded in the last ``window_s`` seconds, and a
refused one is told when the oldest that counts leaves the window (``Retry-After``). Exact,
unlike a fixed window (no double burst at a boundary), and small: at most ``limit`` times per
key. Callers pass the time (``now``), so a test drives it with a fake clock.

    windows = memory_windows()                    # one process (embedded, tests, no Redis)
    windows = RedisWindows(client, "herald:qa:limit:")   # every Q&A worker on the Redis
    verdict = await windows.attempt(key, limit=10, window_s=900, now=t, record=Record.IF_ALLOWED)

:class:`RedisWindows` runs one Lua script per attempt (one key, so it works on a Redis Cluster
too) and falls back to its in-process twin when Redis fails, saying so in the log once a
minute: a limit held per process is better than logins failing with Redis down.
"""

from __future__ import annotations

import enum
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

MAX_MEMORY_KEYS = 100_000
"""Keys the in-process windows track at most; past it the expired go, then the oldest."""


class Record(enum.Enum):
    """Whether an attempt is remembered: never (a peek), only when allowed, or always."""

    NEVER = "0"
    IF_ALLOWED = "1"
    ALWAYS = "2"


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0
    """When refused: seconds until an attempt would be allowed again."""


class Windows(Protocol):
    async def attempt(
        self, key: str, *, limit: int, window_s: float, now: float, record: Record
    ) -> Verdict:
        """Whether fewer than *limit* attempts were recorded under *key* in the *window_s*
        seconds before *now*; records this one at *now* as *record* says."""
        ...

    async def aclose(self) -> None: ...


class MemoryWindows:
    """The in-process twin: a deque of times per key, at most :data:`MAX_MEMORY_KEYS` keys."""

    def __init__(self, max_keys: int = MAX_MEMORY_KEYS) -> None:
        self._times: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._times)

    async def attempt(
        self, key: str, *, limit: int, window_s: float, now: float, record: Record
    ) -> Verdict:
        times = self._times.get(key)
        if times is None:
            times = deque()
        while times and times[0] <= now - window_s:
            times.popleft()
        allowed = len(times) < limit
        verdict = Verdict(True)
        if not allowed:
            # The attempt that must leave for one more to fit: the (len - limit + 1)-th oldest.
            verdict = Verdict(False, max(0.0, times[len(times) - limit] + window_s - now))
        if record is Record.ALWAYS or (record is Record.IF_ALLOWED and allowed):
            times.append(now)
        if times:
            self._keep(key, times, now, window_s)
        else:
            self._times.pop(key, None)
        return verdict

    def _keep(self, key: str, times: deque[float], now: float, window_s: float) -> None:
        self._times.pop(key, None)
        self._times[key] = times  # most recently used last
        if len(self._times) <= self._max_keys:
            return
        for stale in [k for k, t in self._times.items() if t[-1] <= now - window_s]:
            del self._times[stale]
        while len(self._times) > self._max_keys:
            del self._times[next(iter(self._times))]

    async def aclose(self) -> None:
        self._times.clear()


_SCRIPT = """
-- KEYS[1]: the window's sorted set (score: the attempt's time in ms)
-- ARGV: now_ms, window_ms, limit, record (0 never, 1 if allowed, 2 always), member
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local retry = 0
if count >= limit then
  local first = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  retry = math.max(0, tonumber(first[2]) + window - now)
end
if ARGV[4] == '2' or (ARGV[4] == '1' and count < limit) then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[1], window)
end
if count < limit then return {1, 0} end
return {0, retry}
"""


class RedisWindows:
    """The windows in Redis sorted sets under *prefix*, shared by every process using them."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str,
        *,
        fallback: MemoryWindows | None = None,
        warn_every_s: float = 60.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SCRIPT)
        self.fallback = fallback if fallback is not None else MemoryWindows()
        self._warn_every_s = warn_every_s
        self._warned_at = -warn_every_s
        self._failures = 0

    async def attempt(
        self, key: str, *, limit: int, window_s: float, now: float, record: Record
    ) -> Verdict:
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        args = [round(now * 1000), round(window_s * 1000), limit, record.value, member]
        try:
            reply = await self._script(keys=[self._prefix + key], args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._warn(exc)
            return await self.fallback.attempt(
                key, limit=limit, window_s=window_s, now=now, record=record
            )
        allowed, retry_ms = int(reply[0]), int(reply[1])
        return Verdict(True) if allowed else Verdict(False, retry_ms / 1000)

    def _warn(self, exc: BaseException) -> None:
        self._failures += 1
        if time.monotonic() - self._warned_at >= self._warn_every_s:
            self._warned_at = time.monotonic()
            log.warning(
                "auth limits: Redis failed %d time(s) (last: %s); counting in this process",
                self._failures,
                exc,
            )
            self._failures = 0

    async def aclose(self) -> None:
        await self._client.aclose()
        await self.fallback.aclose()
