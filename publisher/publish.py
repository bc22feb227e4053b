"""Publishing over Redis: ``Publisher.publish(channel, data)`` and the scripts behind it.

:class:`PublishScripts` is the only code that calls ``scripts/publish.lua`` and
``scripts/history.lua``; :class:`Publisher` (any Python backend) and
:class:`socketsrv.bus.redis.RedisBus` (the socket fleet) both go through it, so a publication
made by either is the same in Redis. The result types and :class:`BusUnavailable` come from
:mod:`socketsrv.bus.base`, where the bus contract that these scripts implement is written.

    async with Publisher("redis://localhost:6379/0") as publisher:
        result = await publisher.publish("question:42", {"score": 7}, event_id="vote:991")
        result.position.offset   # the publication's number in the channel's epoch
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import TracebackType
from typing import Any, Self

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from publisher.channels import parse_channel
from publisher.envelope import MAX_DATA_BYTES, StreamPosition, pack_data
from publisher.errors import BusUnavailable, InvalidPayload, PublishFailed
from publisher.keys import DEFAULT_PREFIX, KeyLayout
from publisher.stream import HistoryRead, HistoryResult, PublishResult

MAX_EVENT_ID_LENGTH = 128
_EVENT_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_EVENT_ID_LENGTH}}}")


def check_event_id(event_id: str) -> str:
    """Return *event_id* if it is ``""`` (none) or 1-128 of ``A-Za-z0-9_.:-``; else raise.

    Raises :class:`InvalidPayload`. The alphabet keeps idempotency keys printable and short.
    """
    if event_id and _EVENT_ID.fullmatch(event_id) is None:
        raise InvalidPayload(
            f"an event id is 1-{MAX_EVENT_ID_LENGTH} characters of A-Z a-z 0-9 _ . : -"
        )
    return event_id


def new_epoch() -> str:
    """A random epoch name (8 URL-safe characters, 48 bits)."""
    return secrets.token_urlsafe(6)


def history_complete(
    since: StreamPosition, position: StreamPosition, first_offset: int | None, count: int
) -> bool:
    """Whether *count* publications from *first_offset* cover every offset after *since*.

    Both buses keep offsets consecutive within an epoch, so starting right after
    ``since.offset`` with exactly the missing count means reaching ``position.offset``.
    A *since* in another epoch, or ahead of the top, is never complete.
    """
    if since.epoch != position.epoch or not 0 <= since.offset <= position.offset:
        return False
    missing = position.offset - since.offset
    return missing == 0 or (first_offset == since.offset + 1 and count == missing)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How long and how much a channel's history keeps (the same for every channel)."""

    history_size: int = 500
    history_ttl_s: float = 900.0
    meta_ttl_s: float = 30 * 86400.0
    """How long a channel's epoch and top survive without a publication."""
    idempotency_ttl_s: float = 86400.0

    def __post_init__(self) -> None:
        if self.history_size < 1:
            raise ValueError(f"history_size must be at least 1, not {self.history_size}")
        for name in ("history_ttl_s", "meta_ttl_s", "idempotency_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")


@cache
def _script_source(name: str) -> str:
    return resources.files("publisher").joinpath("scripts", name).read_text(encoding="utf-8")


def command_client(redis_url: str, *, socket_timeout_s: float, max_connections: int = 64) -> Redis:
    """A pooled client for scripts: no automatic retry, no decoding (envelopes are bytes).

    A retried publish could publish twice when only the reply was lost, so errors go to the
    caller, who may retry with an event id. Stale pooled connections (after a Redis restart)
    are still replaced: the pool checks a connection for EOF before lending it, a check
    redis-py skips while "maintenance notifications" (a Redis Enterprise feature) are on.
    """
    # A blocking pool: a burst of history reads (a thousand clients resubscribing after a
    # deploy) waits for a free connection instead of failing with "Too many connections".
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=max_connections,
        timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


class PublishScripts:
    """The two Lua scripts on one client: atomic publish and atomic history read.

    Every method raises :class:`BusUnavailable` when Redis cannot be reached or refuses the
    call; the caller owns *client* and closes it.
    """

    def __init__(self, client: Redis, keys: KeyLayout, settings: HistorySettings) -> None:
        self._keys = keys
        self._settings = settings
        self._client = client
        self._publish = client.register_script(_script_source("publish.lua"))
        self._history = client.register_script(_script_source("history.lua"))

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """Publish msgpack *packed_data* to *channel*: :meth:`socketsrv.bus.base.Bus.publish`.

        Raises :class:`InvalidPayload` for a malformed *event_id*.
        """
        check_event_id(event_id)
        keys, s = self._keys, self._settings
        args = (
            keys.live(channel),
            packed_data,
            event_id,
            new_epoch(),
            s.history_size,
            _ms(s.history_ttl_s),
            _ms(s.meta_ttl_s),
            _ms(s.idempotency_ttl_s),
            keys.event_prefix(channel),
        )
        try:
            epoch, offset, duplicate = await self._publish(
                keys=[keys.history(channel), keys.meta(channel)], args=args
            )
        except RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc
        return PublishResult(StreamPosition(epoch.decode(), int(offset)), bool(duplicate))

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`socketsrv.bus.base.Bus.history`; *limit* below 0 raises ValueError."""
        if limit < 0:
            raise ValueError(f"limit must be at least 0, not {limit}")
        keys, args = self._history_call(channel, since, limit)
        try:
            reply = await self._history(keys=keys, args=args)
        except RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc
        return _history_result(reply, since)

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """:meth:`history` for each of *reads*, in one pipelined round trip.

        See :meth:`socketsrv.bus.base.Bus.history_many`. A read through a pipeline costs the
        caller about a sixth of the CPU of one awaited alone (bench/results/ANALYSIS.md), which
        is what a reconnect storm of clients with a channel each needs.
        """
        for read in reads:
            if read.limit < 0:
                raise ValueError(f"limit must be at least 0, not {read.limit}")
        if not reads:
            return []
        calls = [self._history_call(r.channel, r.since, r.limit) for r in reads]
        try:
            replies = await self._evalsha_pipeline(calls)
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # Redis restarted without the script: load it once and read again.
                self._history.sha = await self._client.script_load(self._history.script)
                replies = await self._evalsha_pipeline(calls)
        except RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc
        for reply in replies:
            if isinstance(reply, RedisError):
                raise BusUnavailable(f"Redis: {reply}")
        return [
            _history_result(reply, read.since) for read, reply in zip(reads, replies, strict=True)
        ]

    async def _evalsha_pipeline(
        self, calls: list[tuple[list[str], tuple[str | int, ...]]]
    ) -> list[Any]:
        # EVALSHA without redis-py's script registration, which costs a SCRIPT EXISTS round
        # trip on every execute (6% of a storm's worker CPU, bench/results/ANALYSIS.md).
        pipe = self._client.pipeline(transaction=False)
        sha = self._history.sha
        for keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    def _history_call(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> tuple[list[str], tuple[str | int, ...]]:
        keys = self._keys
        # A negative offset cannot be in any history: read the position only.
        wanted = since if since is not None and since.offset >= 0 else StreamPosition("", 0)
        args = (new_epoch(), _ms(self._settings.meta_ttl_s), wanted.epoch, wanted.offset, limit)
        return [keys.history(channel), keys.meta(channel)], args


def _history_result(reply: list[Any], since: StreamPosition | None) -> HistoryResult:
    """history.lua's reply: epoch, top offset, then (offset, envelope) pairs after *since*."""
    position = StreamPosition(reply[0].decode(), int(reply[1]))
    if since is None:
        return HistoryResult(position, [], True)
    offsets = [int(offset) for offset in reply[2::2]]
    envelopes = [bytes(envelope) for envelope in reply[3::2]]
    first = offsets[0] if offsets else None
    complete = history_complete(since, position, first, len(envelopes))
    return HistoryResult(position, envelopes, complete)


class Publisher:
    """Publishes to Herald channels through Redis; one per process, shared by its tasks.

    Construction does no I/O: the first :meth:`publish` connects. Close it with
    :meth:`close` or ``async with``. Settings must match the socket fleet's (the same
    *prefix* and history settings), since both write the same keys.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        history_size: int = 500,
        history_ttl_s: float = 900.0,
        meta_ttl_s: float = 30 * 86400.0,
        idempotency_ttl_s: float = 86400.0,
        max_data_bytes: int = MAX_DATA_BYTES,
        socket_timeout_s: float = 5.0,
    ) -> None:
        settings = HistorySettings(history_size, history_ttl_s, meta_ttl_s, idempotency_ttl_s)
        self._max_data_bytes = max_data_bytes
        self._client = command_client(redis_url, socket_timeout_s=socket_timeout_s)
        self._scripts = PublishScripts(self._client, KeyLayout(prefix), settings)

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> PublishResult:
        """Publish *data* (any JSON-compatible value) to *channel*.

        The publication gets the channel's next offset, enters its history and reaches every
        subscriber, atomically. With an *event_id*, a repeat within ``idempotency_ttl_s``
        publishes nothing and returns the first position (``duplicate=True``): pass one when
        retrying after :class:`PublishFailed`.

        Raises :class:`InvalidChannel`, :class:`InvalidPayload` (data or event id) or
        :class:`PublishFailed` (Redis unreachable or refusing; the publication may or may not
        have been made).
        """
        parse_channel(channel)
        packed = pack_data(data, max_bytes=self._max_data_bytes)
        check_event_id(event_id)
        try:
            return await self._scripts.publish(channel, packed, event_id=event_id)
        except BusUnavailable as exc:
            raise PublishFailed(channel, exc.why) from exc

    async def close(self) -> None:
        """Close the Redis connections; idempotent."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
