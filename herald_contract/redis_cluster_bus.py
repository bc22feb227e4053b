"""The Redis Cluster bus: sharded pub/sub for live delivery, streams for history.

The same bus as :mod:`herald_contract.redis_bus`, for a Redis Cluster (Redis >= 7) named by a
``redis+cluster://`` URL (:mod:`herald_contract.cluster_urls`). A channel's keys and its live
name share one hash slot (:mod:`herald_contract.keys`), so every step about one channel runs
on the one primary that owns that slot:

* publish runs the same publish script (``lua/publish.lua``) with its ``sharded`` flag, which
  ends in SPUBLISH; history runs ``lua/history.lua``. redis-py's async ``RedisCluster``
  routes each EVALSHA by its keys and follows MOVED/ASK replies; ``history_many`` is one
  cluster pipeline (redis-py groups its commands per node);
* live delivery comes from one SSUBSCRIBE connection per primary that owns a wanted
  channel (:mod:`herald_contract.cluster_pubsub`).

Lifecycle (:class:`herald_contract.lifecycle.BusState`), as the single-Redis bus::

    NEW --start()--> LIVE --a shard lost / a slot moved--> RECOVERING --resubscribed--> LIVE

Any loss (a shard connection fails or goes silent; Redis drops a wanted channel because its
slot moved; an SSUBSCRIBE is answered MOVED) makes the whole bus RECOVERING: every shard
connection is dropped, the slot map is read again, every wanted channel is subscribed at its
current owner (one SSUBSCRIBE per slot), and ``on_bus_restored`` tells the listener to repair
every channel from history. A per-shard recovery would repair fewer channels, but the
listener interface knows one connection only; see docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_contract.backoff import Backoff, retry_until_done
from herald_contract.bus import (
    BusListener,
    BusObserver,
    BusUnavailable,
    HistoryRead,
    HistoryResult,
    PublishResult,
    ShardObserver,
)
from herald_contract.cluster_client import cluster_command_client
from herald_contract.cluster_pubsub import (
    LOST_ERRORS,
    Address,
    ClusterPubSub,
    ConnectOptions,
    SlotMoved,
)
from herald_contract.cluster_urls import parse_cluster_url
from herald_contract.envelope import StreamPosition
from herald_contract.history import HistorySettings
from herald_contract.keys import KeyLayout
from herald_contract.lifecycle import BusLifecycle, BusState
from herald_contract.redis_scripts import PublishScripts

logger = logging.getLogger(__name__)

_Target = TypeVar("_Target")
_Result = TypeVar("_Result")

_CONNECTED = (BusState.LIVE, BusState.RECOVERING)


class RedisClusterBus:
    """A :class:`herald_contract.bus.Bus` over a Redis Cluster (see the module docstring).

    Takes the same arguments as :class:`herald_contract.redis_bus.RedisBus`, with a
    ``redis+cluster://`` URL. Construction does no I/O; :meth:`start` connects.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        keys: KeyLayout,
        history_size: int = 500,
        history_ttl_s: float = 900.0,
        meta_ttl_s: float = 30 * 86400.0,
        idempotency_ttl_s: float = 86400.0,
        backoff: Backoff | None = None,
        observer: BusObserver | None = None,
        ping_interval_s: float = 5.0,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self._redis_url = redis_url
        self._url = parse_cluster_url(redis_url)  # a malformed URL fails here, before any I/O
        self._keys = keys
        self._settings = HistorySettings(history_size, history_ttl_s, meta_ttl_s, idempotency_ttl_s)
        self._backoff = backoff if backoff is not None else Backoff()
        self._observer = observer
        self._ping_interval_s = ping_interval_s
        self._socket_timeout_s = socket_timeout_s
        self._lifecycle = BusLifecycle("Redis Cluster")
        self._listener: BusListener | None = None
        self._client: RedisCluster | None = None
        self._scripts: PublishScripts | None = None
        self._pubsub: ClusterPubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost_at = 0.0
        """When the last loss was noticed (time.monotonic), for the observer."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> BusState:
        return self._lifecycle.state

    @property
    def live(self) -> bool:
        return self._lifecycle.live

    @property
    def shard_connections(self) -> int:
        """Pub/sub connections open now, one per primary that owns a wanted channel."""
        return 0 if self._pubsub is None else self._pubsub.shard_count

    async def start(self, listener: BusListener) -> None:
        """Read the slot map and start the reader; raise BusUnavailable if no node answers.

        Shard connections open as channels are subscribed. Raises
        :class:`herald_contract.errors.BusStateError` unless the bus is NEW.
        """
        self._lifecycle.expect(BusState.NEW, "start")
        self._client = cluster_command_client(
            self._redis_url, socket_timeout_s=self._socket_timeout_s
        )
        self._scripts = PublishScripts(self._client, self._keys, self._settings, sharded=True)
        self._pubsub = ClusterPubSub(
            keys=self._keys,
            lifecycle=self._lifecycle,
            options=ConnectOptions(
                self._url.username,
                self._url.password,
                self._ping_interval_s,
                self._socket_timeout_s,
            ),
            locate=self._locate,
            slot_of=_slot_of,
            on_message=self._on_message,
        )
        try:
            async with asyncio.timeout(self._socket_timeout_s):
                await self._client.initialize()
        except BaseException as exc:
            await self._close_clients()
            if isinstance(exc, LOST_ERRORS):
                raise BusUnavailable(f"cannot connect to the Redis Cluster: {exc}") from exc
            raise
        self._listener = listener
        self._lifecycle.move(BusState.LIVE, "start")
        self._observe(lambda observer: observer.live_changed(True))
        self._observe_shards()
        self._reader = asyncio.create_task(self._run(), name="herald-cluster-bus-reader")
        self._reader.add_done_callback(_log_reader_end)

    async def close(self) -> None:
        """Stop the reader, fail pending subscribes and close every connection; idempotent."""
        if self._lifecycle.state is BusState.CLOSED:
            return
        started = self._lifecycle.state is not BusState.NEW
        self._lifecycle.move(BusState.CLOSED, "close")
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        self._listener = None
        await self._close_clients()
        if started:
            self._observe(lambda observer: observer.live_changed(False))
            self._observe_shards()

    async def _close_clients(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.close()
        if self._client is not None:
            await self._client.aclose()

    def _locate(self, key: str) -> Address:
        """The address of the primary that owns *key*'s slot, by the client's slot map."""
        assert self._client is not None
        node = self._client.get_node_from_key(key)
        if node is None:
            raise RedisClusterException(f"no primary serves the slot of {key!r}")
        return node.host, int(node.port)

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe to *channel* at the primary owning its slot; return once confirmed.

        As :meth:`herald_contract.redis_bus.RedisBus.subscribe`: raises
        :class:`BusUnavailable` when the bus is not LIVE or the shard is lost first.
        """
        self._lifecycle.require(BusState.LIVE)
        assert self._pubsub is not None
        await self._pubsub.subscribe(channel)
        self._observe_shards()

    async def unsubscribe(self, channel: str) -> None:
        """Stop live delivery of *channel* at once; unknown channels are ignored."""
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel)

    # -- publish and history ---------------------------------------------------------------

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """See :meth:`herald_contract.bus.Bus.publish`; runs on the channel's shard."""
        self._lifecycle.require(*_CONNECTED)
        assert self._scripts is not None
        return await _unavailable_on_cluster_errors(
            self._scripts.publish(channel, packed_data, event_id=event_id)
        )

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`herald_contract.bus.Bus.history`; runs on the channel's shard."""
        self._lifecycle.require(*_CONNECTED)
        assert self._scripts is not None
        return await _unavailable_on_cluster_errors(self._scripts.history(channel, since, limit))

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """See :meth:`herald_contract.bus.Bus.history_many`: one cluster pipeline."""
        self._lifecycle.require(*_CONNECTED)
        assert self._scripts is not None
        return await _unavailable_on_cluster_errors(self._scripts.history_many(reads))

    # -- the reader ------------------------------------------------------------------------

    async def _run(self) -> None:
        """The reader task: wait for a loss, recover, wait again."""
        assert self._pubsub is not None
        while True:
            exc = await self._pubsub.wait_lost()
            logger.warning("Redis Cluster bus lost a shard: %s", exc)
            await self._lose()
            await self._recover(shard_loss_reason(exc))

    def _on_message(self, channel: str, envelope: bytes) -> None:
        if self._lifecycle.live:
            self._notify(lambda listener: listener.on_publication(channel, envelope))

    async def _lose(self) -> None:
        assert self._pubsub is not None
        self._lifecycle.move(BusState.RECOVERING, "lose a shard of")
        self._lost_at = time.monotonic()
        await self._pubsub.drop("a Redis Cluster shard was lost")
        self._observe(lambda observer: observer.live_changed(False))
        self._observe_shards()
        self._notify(lambda listener: listener.on_bus_lost())

    async def _recover(self, reason: str) -> None:
        """Read the slot map, resubscribe everything, check commands; back to LIVE."""
        _, attempts = await retry_until_done(
            self._restore_once, self._backoff, retry_on=LOST_ERRORS, what="Redis Cluster reconnect"
        )
        self._lifecycle.move(BusState.LIVE, "restore")
        self._observe_recovered(reason)
        self._observe(lambda observer: observer.reconnected())
        self._observe(lambda observer: observer.live_changed(True))
        logger.info("Redis Cluster bus restored after %d attempt(s)", attempts)
        self._notify(lambda listener: listener.on_bus_restored())

    async def _restore_once(self) -> None:
        assert self._pubsub is not None
        assert self._client is not None
        try:
            async with asyncio.timeout(self._socket_timeout_s):
                # A fresh slot map: the old one may name the node a slot moved away from.
                await self._client.nodes_manager.initialize()
            await self._pubsub.resubscribe()
            async with asyncio.timeout(self._socket_timeout_s):
                await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
        except LOST_ERRORS:
            await self._pubsub.drop("a Redis Cluster shard was lost")
            raise

    # -- calling out -----------------------------------------------------------------------

    def _notify(self, call: Callable[[BusListener], None]) -> None:
        _call_out("listener", self._listener, call)

    def _observe(self, call: Callable[[BusObserver], None]) -> None:
        _call_out("observer", self._observer, call)

    def _pubsub_connections(self) -> int:
        return self.shard_connections

    def _observe_shards(self) -> None:
        """Tell a :class:`ShardObserver` how many pub/sub connections are open now."""
        if isinstance(self._observer, ShardObserver):
            count = self._pubsub_connections()
            _call_out("observer", self._observer, lambda o: o.shard_connections(count))

    def _observe_recovered(self, reason: str) -> None:
        """Tell a :class:`ShardObserver` about the recovery that just ended."""
        if isinstance(self._observer, ShardObserver):
            channels = 0 if self._pubsub is None else self._pubsub.channel_count
            seconds = max(0.0, time.monotonic() - self._lost_at)
            _call_out("observer", self._observer, lambda o: o.recovered(reason, channels, seconds))
            self._observe_shards()


def _slot_of(key: str) -> int:
    return key_slot(key.encode())


async def _unavailable_on_cluster_errors(call: Awaitable[_Result]) -> _Result:
    """Await *call*; a cluster-level failure (no node answers) is BusUnavailable too."""
    try:
        return await call
    except RedisClusterException as exc:
        raise BusUnavailable(f"Redis Cluster: {exc}") from exc


def _call_out(role: str, target: _Target | None, call: Callable[[_Target], None]) -> None:
    if target is None:
        return
    try:
        call(target)
    except Exception:
        logger.exception("the bus %s failed", role)


def shard_loss_reason(exc: BaseException) -> str:
    """The :data:`herald_contract.bus.RECOVERY_REASONS` entry for a shard loss *exc*."""
    if isinstance(exc, SlotMoved):
        # MOVED/ASK: a subscribe was refused; otherwise Redis pushed an unasked sunsubscribe.
        return "slot_moved" if ("MOVED" in str(exc) or "ASK" in str(exc)) else "sunsubscribe"
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "ping_timeout"
    if isinstance(exc, LOST_ERRORS):
        return "connection_lost"
    return "reader_error"


def _log_reader_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("Redis Cluster bus reader died", exc_info=task.exception())
