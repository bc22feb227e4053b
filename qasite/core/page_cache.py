"""A two-level cache of built pages: bytes by key, each stored with the version stamp it was
built at (issue 15, item 5; the question page, qasite/api/page.py).

* **L1**, in the process: least recently used first out, bounded in entries and in bytes.
* **L2**, in Redis (when configured): shared by the workers and hosts, so a page one process
  built is not built again by the next one to read it.

A lookup gives the stored bytes only when their stamp equals the *current* stamp the caller
read from the database; otherwise it is a miss (``stale``), so freshness is decided by the
database, never by time. ``ttl_s`` only bounds how long an entry may sit unread.

Redis may hold anything (another version of the service, an operator's mistake, an attacker
with access): an L2 value that does not parse, or whose body is not a JSON object, is a miss
counted ``bad`` and deleted, never an error; a Redis that does not answer within
``redis_timeout_s`` is a miss counted ``error``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Stamp = tuple[int, ...]

L2_FORMAT = b"hp1"
"""The first field of every L2 value: ``hp1 <stamp as comma-separated ints>\\n<body>``."""


@dataclass(slots=True)
class _Entry:
    stamp: Stamp
    body: bytes
    expires_at: float


class LocalPages:
    """The L1: an LRU of ``key -> (stamp, body)`` bounded by *max_entries* and *max_bytes*.

    Not thread-safe: used from the event loop only.
    """

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._clock = clock
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: int) -> bool:
        return key in self._entries

    def get(self, key: int) -> tuple[Stamp, bytes] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self.discard(key)
            return None
        self._entries.move_to_end(key)
        return entry.stamp, entry.body

    def put(self, key: int, stamp: Stamp, body: bytes) -> None:
        self.discard(key)
        if len(body) > self._max_bytes:
            return
        self._entries[key] = _Entry(stamp, body, self._clock() + self._ttl_s)
        self.bytes += len(body)
        while len(self._entries) > self._max_entries or self.bytes > self._max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.bytes -= len(oldest.body)

    def discard(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= len(entry.body)


def encode_l2(stamp: Stamp, body: bytes) -> bytes:
    return L2_FORMAT + b" " + ",".join(map(str, stamp)).encode() + b"\n" + body


def decode_l2(value: bytes) -> tuple[Stamp, bytes]:
    """``(stamp, body)`` of an L2 value; ValueError when it is not one this code wrote."""
    head, sep, body = value.partition(b"\n")
    fmt, _, numbers = head.partition(b" ")
    if not sep or fmt != L2_FORMAT or not numbers:
        raise ValueError("not a page cache value")
    stamp = tuple(int(n) for n in numbers.split(b","))
    parsed = json.loads(body)
    if not isinstance(parsed, dict):
        raise ValueError("the body is not a JSON object")
    return stamp, body


class PageCache:
    """L1 then L2 (if any) lookups of pages by integer key, valid only at the caller's stamp.

    *redis*: the L2's client (None: L1 only); *key_prefix*: the fleet's, so that several
    installations can share a Redis. *counter*: ``herald_qa_page_cache{level, result}``.
    """

    def __init__(
        self,
        local: LocalPages,
        counter: Counter,
        *,
        redis: Redis | RedisCluster | None = None,
        key_prefix: str = "herald",
        ttl_s: float = 3600.0,
        kind: str = "question",
    ) -> None:
        self.local = local
        self._counter = counter
        self._redis = redis
        self._key_prefix = key_prefix
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._kind = kind

    def redis_key(self, key: int) -> str:
        return f"{self._key_prefix}:qa:page:{self._kind}:{key}"

    def _count(self, level: str, result: str) -> None:
        self._counter.labels(level, result).inc()

    def local_hit(self, key: int, stamp: Stamp) -> bytes | None:
        """The body L1 holds for *key* at exactly *stamp*, counted as an L1 hit; None, counted
        nowhere, otherwise (the caller then looks up with :meth:`get`)."""
        found = self.local.get(key)
        if found is None or found[0] != stamp:
            return None
        self._count("l1", "hit")
        return found[1]

    async def get(self, key: int, stamp: Stamp) -> bytes | None:
        """The body stored for *key* at exactly *stamp*; None (a miss) otherwise."""
        body = self.local_hit(key, stamp)
        if body is not None:
            return body
        self._count("l1", "stale" if key in self.local else "miss")
        if self._redis is None:
            return None
        body = await self._get_l2(key, stamp)
        if body is not None:
            self.local.put(key, stamp, body)
        return body

    async def _get_l2(self, key: int, stamp: Stamp) -> bytes | None:
        try:
            value = await self._redis.get(self.redis_key(key))  # type: ignore[union-attr]
        except (RedisError, OSError, TimeoutError) as exc:
            self._count("l2", "error")
            log.debug("page cache: Redis GET failed (%s): a miss", exc)
            return None
        if value is None:
            self._count("l2", "miss")
            return None
        try:
            if not isinstance(value, bytes):
                raise ValueError(f"a {type(value).__name__} value")
            found_stamp, body = decode_l2(value)
        except (ValueError, UnicodeDecodeError) as exc:
            self._count("l2", "bad")
            log.warning("page cache: bad value at %s (%s): dropped", self.redis_key(key), exc)
            await self._delete_l2(key)
            return None
        if found_stamp != stamp:
            self._count("l2", "stale")
            return None
        self._count("l2", "hit")
        return body

    async def put(self, key: int, stamp: Stamp, body: bytes) -> None:
        """Keep *body* built at *stamp* in L1 and L2 (a Redis error is counted, not raised)."""
        self.local.put(key, stamp, body)
        if self._redis is None:
            return
        try:
            await self._redis.set(self.redis_key(key), encode_l2(stamp, body), px=self._ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._count("l2", "error")
            log.debug("page cache: Redis SET failed (%s)", exc)

    async def _delete_l2(self, key: int) -> None:
        try:
            await self._redis.delete(self.redis_key(key))  # type: ignore[union-attr]
        except (RedisError, OSError, TimeoutError):
            self._count("l2", "error")
