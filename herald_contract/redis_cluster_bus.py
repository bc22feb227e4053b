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

Any loss (a shard connection fails or goes silent, as when a primary dies; Redis drops a
wanted channel because its slot moved; an SSUBSCRIBE is answered MOVED) makes the whole bus
RECOVERING: every shard connection is dropped, the slot map is read again, every wanted
channel is subscribed at its current owner (one SSUBSCRIBE per slot), and ``on_bus_restored``
tells the listener to repair every channel from history. A per-shard recovery would repair
fewer channels, but the listener interface knows one connection only; see docs/decisions.md.

A lost shard connection whose channels are found at another primary once recovered is
reported to the observer as a ``failover`` (the replica of a dead primary took its slots
over); a dropped or refused channel as ``sunsubscribe`` / ``slot_moved``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import ClassVar, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_contract.backoff import Backoff
from herald_contract.bus import BusObserver, BusUnavailable
from herald_contract.cluster_client import cluster_command_client
from herald_contract.cluster_pubsub import (
    LOST_ERRORS,
    Address,
    ClusterPubSub,
    ConnectOptions,
    SlotMoved,
)
from herald_contract.cluster_urls import parse_cluster_url
from herald_contract.history import Retention
from herald_contract.keys import KeyLayout
from herald_contract.recovering_bus import RecoveringBus
from herald_contract.redis_scripts import PublishScripts

logger = logging.getLogger(__name__)

_Result = TypeVar("_Result")


class RedisClusterBus(RecoveringBus[ClusterPubSub, RedisCluster]):
    """A :class:`herald_contract.bus.Bus` over a Redis Cluster (see the module docstring).

    Takes the same arguments as :class:`herald_contract.redis_bus.RedisBus`, with a
    ``redis+cluster://`` URL. Construction does no I/O; :meth:`start` connects. The
    lifecycle, publish and history live in :class:`herald_contract.recovering_bus.RecoveringBus`.
    """

    _logger: ClassVar[logging.Logger] = logger
    _name: ClassVar[str] = "Redis Cluster"
    _unreachable: ClassVar[str] = "the Redis Cluster"
    _lost_errors: ClassVar[tuple[type[BaseException], ...]] = LOST_ERRORS
    _lose_action: ClassVar[str] = "lose a shard of"
    _lost_why: ClassVar[str] = "a Redis Cluster shard was lost"
    _reconnect_what: ClassVar[str] = "Redis Cluster reconnect"
    _restored_log: ClassVar[str] = "Redis Cluster bus restored after %d attempt(s)"
    _reader_name: ClassVar[str] = "herald-cluster-bus-reader"
    _reader_died_log: ClassVar[str] = "Redis Cluster bus reader died"

    def __init__(
        self,
        redis_url: str,
        *,
        keys: KeyLayout,
        history_size: int = 500,
        history_ttl_s: float = 900.0,
        meta_ttl_s: float = 30 * 86400.0,
        idempotency_ttl_s: float = 86400.0,
        kind_retention: Mapping[str, Retention] | None = None,
        backoff: Backoff | None = None,
        observer: BusObserver | None = None,
        ping_interval_s: float = 5.0,
        socket_timeout_s: float = 5.0,
    ) -> None:
        self._redis_url = redis_url
        self._url = parse_cluster_url(redis_url)  # a malformed URL fails here, before any I/O
        self._owners_before: dict[str, Address] = {}
        """Where each channel was subscribed when the last loss was noticed."""
        super().__init__(
            keys=keys,
            history_size=history_size,
            history_ttl_s=history_ttl_s,
            meta_ttl_s=meta_ttl_s,
            idempotency_ttl_s=idempotency_ttl_s,
            kind_retention=kind_retention,
            backoff=backoff,
            observer=observer,
            ping_interval_s=ping_interval_s,
            socket_timeout_s=socket_timeout_s,
        )

    @property
    def shard_connections(self) -> int:
        """Pub/sub connections open now, one per primary that owns a wanted channel."""
        return 0 if self._pubsub is None else self._pubsub.shard_count

    def subscribed_at(self) -> dict[str, Address]:
        """The node (host, port) each wanted channel is subscribed at now: its slot's primary
        by the bus's slot map (checked to be a primary by every recovery).

        A channel whose SSUBSCRIBE is sent counts before Redis confirms it; while the bus is
        LIVE every channel here is confirmed, while RECOVERING some may be missing.
        """
        return {} if self._pubsub is None else self._pubsub.owners()

    # -- connecting ------------------------------------------------------------------------

    def _open(self) -> None:
        """Shard connections open as channels are subscribed; start reads the slot map only."""
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

    async def _connect(self) -> None:
        assert self._client is not None
        async with asyncio.timeout(self._socket_timeout_s):
            await self._client.initialize()

    def _locate(self, key: str) -> Address:
        """The address of the primary that owns *key*'s slot, by the client's slot map."""
        assert self._client is not None
        node = self._client.get_node_from_key(key)
        if node is None:
            raise RedisClusterException(f"no primary serves the slot of {key!r}")
        return node.host, int(node.port)

    def _pubsub_connections(self) -> int:
        return self.shard_connections

    async def _command(self, call: Awaitable[_Result]) -> _Result:
        """Await *call*; a cluster-level failure (no node answers) is BusUnavailable too."""
        try:
            return await call
        except RedisClusterException as exc:
            raise BusUnavailable(f"Redis Cluster: {exc}") from exc

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe to *channel* at the primary owning its slot; return once confirmed.

        As :meth:`herald_contract.redis_bus.RedisBus.subscribe`: raises
        :class:`BusUnavailable` when the bus is not LIVE or the shard is lost first.
        """
        await super().subscribe(channel)
        self._observe_shards()

    # -- the reader ------------------------------------------------------------------------

    async def _run(self) -> None:
        """The reader task: wait for a loss, recover, wait again."""
        assert self._pubsub is not None
        while True:
            exc = await self._pubsub.wait_lost()
            logger.warning("Redis Cluster bus lost a shard: %s", exc)
            self._owners_before = self._pubsub.owners()
            await self._lose()
            await self._recover(shard_loss_reason(exc))

    def _observe_recovered(self, reason: str) -> None:
        """Report a lost connection whose channels now live elsewhere as a ``failover``."""
        if reason in _CONNECTION_REASONS and self._pubsub is not None:
            now = self._pubsub.owners()
            if any(now.get(c, a) != a for c, a in self._owners_before.items()):
                reason = "failover"
        super()._observe_recovered(reason)

    async def _restore_once(self) -> None:
        """Read the slot map, resubscribe everything, check commands; raises LOST_ERRORS."""
        assert self._pubsub is not None
        assert self._client is not None
        try:
            async with asyncio.timeout(self._socket_timeout_s):
                # A fresh slot map: the old one may name the node a slot moved away from.
                await self._client.nodes_manager.initialize()
            await self._pubsub.resubscribe()
            async with asyncio.timeout(self._socket_timeout_s):
                await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
                await self._check_subscribed_at_primaries()
        except LOST_ERRORS:
            await self._pubsub.drop(self._lost_why)
            raise

    async def _check_subscribed_at_primaries(self) -> None:
        """Raise :class:`StaleSlotMap` unless every node subscribed at is a primary now.

        A slot map read from a node that lagged behind a reshard may name as a slot's owner a
        primary that has since lost its last slot and become the new owner's replica; Redis
        lets a replica take SSUBSCRIBE for its primary's slots, so the channel is confirmed
        there, and removing that node later is a lost connection (a "failover" for the
        observer). Asked after the confirmations: a primary that loses a slot afterwards
        pushes sunsubscribe.
        """
        assert self._pubsub is not None
        assert self._client is not None
        for host, port in sorted(set(self._pubsub.owners().values())):
            node = self._client.get_node(node_name=f"{host}:{port}")
            role = await self._client.execute_command("ROLE", target_nodes=node)
            if role[0] not in (b"master", "master"):
                raise StaleSlotMap(f"{host}:{port} took SSUBSCRIBE as a replica: a stale map")


class StaleSlotMap(RedisClusterException):
    """The slot map named a node that is no longer a primary (a recovery then tries again)."""


_CONNECTION_REASONS = ("connection_lost", "ping_timeout")


def _slot_of(key: str) -> int:
    return key_slot(key.encode())


def shard_loss_reason(exc: BaseException) -> str:
    """The :data:`herald_contract.bus.RECOVERY_REASONS` entry for a shard loss *exc*."""
    if isinstance(exc, SlotMoved):
        # MOVED/ASK: a subscribe was refused; otherwise Redis pushed an unasked sunsubscribe.
        return "slot_moved" if exc.refused else "sunsubscribe"
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "ping_timeout"
    if isinstance(exc, LOST_ERRORS):
        return "connection_lost"
    return "reader_error"
