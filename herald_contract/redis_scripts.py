"""Publish and history on Redis: the Lua scripts of ``lua/`` and the client that runs them.

This module owns:

* :func:`command_client`, the pooled redis-py client the scripts run on (no automatic
  retries, no decoding);
* :class:`PublishScripts`, the only code that runs ``lua/publish.lua`` (take the next offset,
  append to the history, broadcast: one atomic step), ``lua/history.lua`` (the position
  and the publications after one, read atomically; it writes nothing for a channel with
  nothing published) and ``lua/positions.lua`` (the positions of many channels, read only),
  and that turns their replies into
  :class:`herald_contract.stream.PublishResult` and :class:`herald_contract.stream.HistoryResult`.

It builds on the key layout, the envelope and the history rules of this package. Whatever
writes a publication to Redis runs these scripts (the publishing library and the Redis bus
alike), so a publication is the same in Redis whoever made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from herald_contract.envelope import StreamPosition
from herald_contract.errors import BusUnavailable
from herald_contract.history import (
    NO_EPOCH,
    NOTHING_PUBLISHED,
    HistorySettings,
    check_event_id,
    history_complete,
    new_epoch,
    to_ms,
)
from herald_contract.keys import KeyLayout
from herald_contract.redis_pools import IDLE_CHECK_S, connection_pool
from herald_contract.stream import HistoryRead, HistoryResult, PublishResult

# A replicated write that changes nothing: the key's expiry, set again to the same instant.
_TOUCH_META = """
local at = redis.call('PEXPIRETIME', KEYS[1])
if at > 0 then
  redis.call('PEXPIREAT', KEYS[1], at)
end
return at
"""


@cache
def _script_source(name: str) -> str:
    return resources.files("herald_contract").joinpath("lua", name).read_text(encoding="utf-8")


def command_client(redis_url: str, *, socket_timeout_s: float, max_connections: int = 64) -> Redis:
    """A pooled client for scripts: no automatic retry, no decoding (envelopes are bytes).

    A retried publish could publish twice when only the reply was lost, so errors go to the
    caller, who may retry with an event id. Stale pooled connections (after a Redis restart,
    or a primary killed and replaced by the sentinels) are still replaced before a command
    goes out: the pool checks a connection for EOF before lending it (a check redis-py skips
    while "maintenance notifications", a Redis Enterprise feature, are on, so they are off),
    and PINGs one idle for longer than :data:`herald_contract.redis_pools.IDLE_CHECK_S`,
    connecting afresh when the PING fails. A command is sent once, on a connection that just
    answered; it can still fail when the server dies after that, and then is not retried.
    *redis_url* may be a ``redis+sentinel://`` URL (:mod:`herald_contract.redis_urls`):
    connections then go to the primary the sentinels report.
    """
    # A blocking pool: a burst of history reads (a thousand clients resubscribing after a
    # deploy) waits for a free connection instead of failing with "Too many connections".
    # A redis+sentinel:// URL gives connections to the current primary (redis_pools.py).
    pool = connection_pool(
        redis_url,
        blocking=True,
        socket_timeout_s=socket_timeout_s,
        max_connections=max_connections,
        timeout=socket_timeout_s,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        health_check_interval=IDLE_CHECK_S,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


class PublishScripts:
    """The Lua scripts on one client: atomic publish, atomic history read, position reads.

    Every method raises :class:`BusUnavailable` when Redis cannot be reached or refuses the
    call; the caller owns *client* and closes it. With *sharded* (a Redis Cluster *client*)
    the publish script broadcasts with SPUBLISH rather than PUBLISH.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        keys: KeyLayout,
        settings: HistorySettings,
        *,
        sharded: bool = False,
    ) -> None:
        self._sharded = sharded
        self._keys = keys
        self._settings = settings
        self._client = client
        self._publish = client.register_script(_script_source("publish.lua"))
        self._history = client.register_script(_script_source("history.lua"))
        self._positions = client.register_script(_script_source("positions.lua"))

    def _publish_args(
        self, channel: str, packed_data: bytes, event_id: str
    ) -> tuple[str | bytes | int, ...]:
        """ARGV of ``lua/publish.lua`` for one publication (a fresh epoch candidate each call)."""
        keys, s = self._keys, self._settings
        history_size, history_ttl_s = s.retention(channel)  # the channel kind's retention
        return (
            keys.live(channel),
            packed_data,
            event_id,
            new_epoch(),
            history_size,
            to_ms(history_ttl_s),
            to_ms(s.meta_ttl_s),
            to_ms(s.idempotency_ttl_s),
            keys.event_prefix(channel),
            *(("sharded",) if self._sharded else ()),
        )

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """Publish msgpack *packed_data* to *channel*: :meth:`herald_contract.bus.Bus.publish`.

        Raises :class:`InvalidPayload` for a malformed *event_id*.
        """
        check_event_id(event_id)
        keys = self._keys
        args = self._publish_args(channel, packed_data, event_id)
        try:
            epoch, offset, duplicate = await self._publish(
                keys=[keys.history(channel), keys.meta(channel)], args=args
            )
        except RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc
        return PublishResult(StreamPosition(epoch.decode(), int(offset)), bool(duplicate))

    async def publish_and_wait(
        self,
        channel: str,
        packed_data: bytes,
        *,
        event_id: str = "",
        replicas: int,
        timeout_ms: int,
    ) -> tuple[PublishResult, int]:
        """:meth:`publish`, then Redis ``WAIT replicas timeout_ms`` on the same connection.

        Returns the result and how many replicas acknowledged the write (``WAIT``'s reply;
        fewer than *replicas* when *timeout_ms* passed first: the publication was still made
        on the primary). Both commands go in one pipeline, which redis-py runs on one pooled
        connection: ``WAIT`` only covers the writes of the connection it runs on. Not for a
        Redis Cluster client (``WAIT`` has no key to route by); *timeout_ms* must be above 0
        (``WAIT`` with 0 blocks for ever) and below the client's socket timeout.
        """
        if isinstance(self._client, RedisCluster):
            raise ValueError("publish_and_wait needs a single Redis (or Sentinel) client")
        if replicas < 1 or timeout_ms < 1:
            raise ValueError(
                f"replicas and timeout_ms must be at least 1: {replicas}, {timeout_ms}"
            )
        check_event_id(event_id)
        keys = self._keys
        script_keys = [keys.history(channel), keys.meta(channel)]
        args = self._publish_args(channel, packed_data, event_id)
        try:
            replies = await self._publish_wait_pipeline(script_keys, args, replicas, timeout_ms)
            if isinstance(replies[0], NoScriptError):
                # Redis restarted without the script: nothing was published; load it, again.
                self._publish.sha = await self._client.script_load(self._publish.script)
                replies = await self._publish_wait_pipeline(script_keys, args, replicas, timeout_ms)
        except RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc
        for reply in replies:
            if isinstance(reply, RedisError):
                raise BusUnavailable(f"Redis: {reply}")
        (epoch, offset, duplicate), acknowledged = replies
        result = PublishResult(StreamPosition(epoch.decode(), int(offset)), bool(duplicate))
        if duplicate:
            # The script wrote nothing, so WAIT covered only this connection's earlier writes
            # (none, on a fresh one). Rewrite the meta key's expiry unchanged, a write that
            # replicates, and WAIT for it: the replicas then hold the first publication too.
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.execute_command("EVAL", _TOUCH_META, 1, keys.meta(channel))
                pipe.execute_command("WAIT", replicas, timeout_ms)
                _, acknowledged = await pipe.execute()
            except RedisError as exc:
                raise BusUnavailable(f"Redis: {exc}") from exc
        return result, int(acknowledged)

    async def _publish_wait_pipeline(
        self, keys: list[str], args: tuple[str | int | bytes, ...], replicas: int, timeout_ms: int
    ) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", self._publish.sha, len(keys), *keys, *args)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`herald_contract.bus.Bus.history`; *limit* below 0 raises ValueError."""
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

        See :meth:`herald_contract.bus.Bus.history_many`. A read through a pipeline costs the
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

    async def positions(self, channels: Sequence[str]) -> list[StreamPosition]:
        """The position of each of *channels*: :meth:`herald_contract.bus.Bus.positions`.

        Reads only each channel's meta hash (``epoch``, ``top``). On one Redis, one EVALSHA
        of ``lua/positions.lua`` for all of them; on a cluster (whose scripts may not span
        slots), one ``HMGET`` per channel in a cluster pipeline. A position check of a
        storm's thousands of channels a second cost a tenth of a worker's CPU when each ran
        ``lua/history.lua`` (bench/results/REPORT.md, fourth session; bench/position_reads.py
        compares the two).
        """
        if not channels:
            return []
        metas = [self._keys.meta(channel) for channel in channels]
        try:
            if self._sharded:
                fields = await self._hmget_pipeline(metas)
            else:
                fields = await self._positions(keys=metas)
        except RedisError as exc:
            raise BusUnavailable(f"Redis: {exc}") from exc
        return [
            NOTHING_PUBLISHED if epoch is None else StreamPosition(epoch.decode(), int(top or 0))
            for epoch, top in zip(fields[::2], fields[1::2], strict=True)
        ]

    async def _hmget_pipeline(self, metas: list[str]) -> list[Any]:
        """``epoch`` and ``top`` of each of the *metas* hashes, flattened as positions.lua's."""
        pipe = self._client.pipeline(transaction=False)
        for meta in metas:
            pipe.execute_command("HMGET", meta, "epoch", "top")
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return [field for reply in replies for field in reply]

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
        args = (new_epoch(), NO_EPOCH, wanted.epoch, wanted.offset, limit)
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
