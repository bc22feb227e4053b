"""The pub/sub side of the Redis Cluster bus: one SSUBSCRIBE connection per shard primary.

Sharded pub/sub (Redis >= 7) delivers a channel's messages only on connections to the node
that owns the channel's hash slot, so :class:`ClusterPubSub` holds one raw connection per
primary it needs (a :class:`ShardConnection`), opened when the first channel of that primary
is subscribed, each read by its own task. A Herald channel's live name carries the channel as
a hash tag (:mod:`herald_contract.keys`), so it lives in the slot of the channel's history.

Like :mod:`herald_contract.redis_pubsub`, these are raw redis-py connections, not redis-py's
``ClusterPubSub``: that class wraps a ``PubSub`` per node, which reconnects and resubscribes
silently inside its reads, and it gives no sign when Redis drops a channel because its slot
moved. The bus must know both: publications in the gap are gone and the listener repairs
them from history (docs/decisions.md, "Redis Cluster: sharded pub/sub driven by the bus").

What counts as a loss, reported by :meth:`ClusterPubSub.wait_lost` (the bus then drops every
shard, refreshes the slot map and resubscribes everything, see
:mod:`herald_contract.redis_cluster_bus`):

* a shard connection that fails, or stays silent after a PING (a blackholed socket);
* an ``sunsubscribe`` Redis pushes for a channel still wanted: its slot moved to another
  node (a migration, a failover, a node removed), or an SSUBSCRIBE refused with MOVED.

A primary that dies (SIGKILL, a host lost) shows as a lost connection;
:meth:`ClusterPubSub.owners` before and after the recovery tells the bus that its channels
moved to the promoted replica.

The set of wanted channels is the source of truth; Redis answers a connection's
(S)(UN)SUBSCRIBE commands in order, so each channel keeps a queue of the replies still due.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_contract.errors import BusUnavailable
from herald_contract.keys import KeyLayout
from herald_contract.lifecycle import BusLifecycle, BusState
from herald_contract.pubsub_wire import (
    DueReplies,
    ReplyKind,
    Waiter,
    batches,
    expect_subscribe,
    fail_waiters,
    parse_reply,
)
from herald_contract.redis_pools import NO_CLIENT_SETINFO

logger = logging.getLogger(__name__)

RESUBSCRIBE_BATCH = 1000
"""Channels per SSUBSCRIBE command when resubscribing (all of one slot)."""

LOST_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What a lost or unusable connection raises (RedisClusterException: no node answers, or a
slot no node serves)."""

_Waiter = Waiter
Address = tuple[str, int]


class SlotMoved(RedisConnectionError):
    """Redis dropped a wanted channel (its slot moved) or refused a subscribe with MOVED/ASK.

    *redirect* is the refusal (``MOVED 1745 10.0.0.2:7001``), None for a dropped *channel*.
    """

    def __init__(
        self, node: str, *, channel: str | None = None, redirect: str | None = None
    ) -> None:
        self.node = node
        self.channel = channel
        self.redirect = redirect
        if redirect is not None:
            super().__init__(f"{node} answered a (un)subscribe with {redirect}")
        else:
            super().__init__(f"{node} dropped {channel!r}: its slot moved")

    @property
    def refused(self) -> bool:
        """An SSUBSCRIBE (or SUNSUBSCRIBE) answered MOVED or ASK, not a channel dropped."""
        return self.redirect is not None


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How shard connections are opened (from the cluster URL and the bus's settings)."""

    username: str | None
    password: str | None
    ping_interval_s: float
    socket_timeout_s: float


class ShardConnection:
    """One raw pub/sub connection to one primary and the replies due on it."""

    def __init__(
        self,
        address: Address,
        *,
        keys: KeyLayout,
        options: ConnectOptions,
        on_message: Callable[[str, bytes], None],
        wanted: Callable[[str], bool],
    ) -> None:
        self.address = address
        self._keys = keys
        self._options = options
        self._on_message = on_message
        self._wanted = wanted
        self._conn: AbstractConnection = Connection(
            host=address[0],
            port=address[1],
            username=options.username,
            password=options.password,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=options.socket_timeout_s,
            # No socket timeout: the reader waits as long as it likes; PING finds dead peers.
            socket_timeout=None,
            # RESP2: messages are plain replies (see herald_contract.redis_pubsub).
            protocol=2,
            **NO_CLIENT_SETINFO,
        )
        self.write_lock = asyncio.Lock()
        self.channels: set[str] = set()
        """Wanted channels subscribed (or being subscribed) on this connection."""
        self._replies: DueReplies = {}

    async def connect(self) -> None:
        """Open the connection; raises one of LOST_ERRORS."""
        try:
            async with asyncio.timeout(self._options.socket_timeout_s):
                await self._conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self, *, wait: bool = False) -> None:
        """Close the socket, ignoring errors, and fail every waiter still due.

        Without *wait* the socket closes in the background: the reader may still be blocked
        on it (as in :func:`herald_contract.redis_pubsub._disconnect`).
        """
        try:
            await self._conn.disconnect(nowait=not wait)
        except LOST_ERRORS as exc:
            logger.debug("closing the shard connection to %s: %s", self.name, exc)
        self.fail_waiters("the shard connection was closed")

    def fail_waiters(self, why: str) -> None:
        fail_waiters(self._replies, why)

    def expect_subscribe(self, channel: str) -> _Waiter:
        return expect_subscribe(self._replies, channel)

    def expect_unsubscribe(self, channel: str) -> None:
        self._replies.setdefault(channel, deque()).append(None)

    async def send(self, *args: str) -> None:
        """Write one command (hold :attr:`write_lock`); raises one of LOST_ERRORS."""
        if not self._conn.is_connected:
            raise RedisConnectionError(f"the pub/sub connection to {self.name} is closed")
        try:
            async with asyncio.timeout(self._options.socket_timeout_s):
                await self._conn.send_command(*args, check_health=False)
        except TimeoutError:
            await self.disconnect()
            raise

    @property
    def name(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    async def read_until_lost(self) -> None:
        """Dispatch replies until the connection fails or a wanted channel is dropped; raise."""
        interval_s = self._options.ping_interval_s
        pinged = False
        while True:
            try:
                reply = await self._conn.read_response(
                    timeout=interval_s, disconnect_on_error=False, push_request=True
                )
            except (MovedError, AskError) as exc:
                # redis-py strips the code from the message ("1745 10.0.0.2:7001"): name it.
                code = "MOVED" if isinstance(exc, MovedError) else "ASK"
                raise SlotMoved(self.name, redirect=f"{code} {exc}") from exc
            if reply is not None:
                pinged = False
                self._dispatch(reply)
                continue
            if pinged:
                raise RedisTimeoutError(f"{self.name}: no reply to PING within {interval_s} s")
            pinged = True
            if not self.write_lock.locked():
                async with self.write_lock:
                    await self.send("PING")

    def _dispatch(self, raw: object) -> None:
        reply = parse_reply(raw, self._keys)
        if reply is None:
            return
        if reply.kind is ReplyKind.MESSAGE:
            if reply.channel in self.channels and isinstance(reply.payload, bytes):
                self._on_message(reply.channel, reply.payload)
            return
        due = self._replies.get(reply.channel)
        if not due:
            if reply.kind is ReplyKind.UNSUBSCRIBE and self._wanted(reply.channel):
                # Nobody asked: Redis dropped the channel because its slot left this node.
                raise SlotMoved(self.name, channel=reply.channel)
            return
        waiter = due.popleft()
        if not due:
            del self._replies[reply.channel]
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ClusterPubSub:
    """The sharded pub/sub connections of one cluster bus (see the module docstring).

    *locate* gives the address of the primary that owns a key's slot now (the command
    client's slot map) and *slot_of* the key's slot. *lifecycle* is the bus's: subscribe
    works only while it is LIVE. Construction does no I/O.
    """

    def __init__(
        self,
        *,
        keys: KeyLayout,
        lifecycle: BusLifecycle,
        options: ConnectOptions,
        locate: Callable[[str], Address],
        slot_of: Callable[[str], int],
        on_message: Callable[[str, bytes], None],
    ) -> None:
        self._keys = keys
        self._lifecycle = lifecycle
        self._options = options
        self._locate = locate
        self._slot_of = slot_of
        self._on_message = on_message
        self._wanted: set[str] = set()
        """Channels the bus should be subscribed to: the source of truth."""
        self._confirming: dict[str, _Waiter] = {}
        self._shards: dict[Address, ShardConnection] = {}
        self._readers: dict[Address, asyncio.Task[None]] = {}
        self._connect_lock = asyncio.Lock()
        self._drops = 0
        """Times every shard was closed (:meth:`drop`, :meth:`close`): a connection opened
        across one is not kept."""
        self._lost: asyncio.Future[BaseException] | None = None

    @property
    def shard_count(self) -> int:
        """Shard connections open now (one per primary that owns a wanted channel)."""
        return len(self._shards)

    @property
    def channel_count(self) -> int:
        """Channels wanted now (those :meth:`resubscribe` subscribes)."""
        return len(self._wanted)

    def owners(self) -> dict[str, Address]:
        """The primary each wanted channel is subscribed at now (a subscribed channel only)."""
        return {
            channel: address
            for address, shard in self._shards.items()
            for channel in shard.channels
            if channel in self._wanted
        }

    # -- losses ----------------------------------------------------------------------------

    async def wait_lost(self) -> BaseException:
        """Return the error of the first loss since the last :meth:`drop` (see the docstring)."""
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._lost)

    def _report_lost(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        if not self._lost.done():
            self._lost.set_result(exc)

    async def _read(self, shard: ShardConnection) -> None:
        try:
            await shard.read_until_lost()
        except asyncio.CancelledError:
            raise
        except LOST_ERRORS as exc:
            self._report_lost(exc)
        except Exception as exc:
            logger.exception("cluster pub/sub reader of %s failed", shard.name)
            self._report_lost(exc)

    async def drop(self, why: str) -> None:
        """Close every shard connection and fail waiting subscribes with *why*.

        Unconfirmed channels leave the wanted set (their subscribe raises); confirmed ones
        stay, to be resubscribed by :meth:`resubscribe`.
        """
        await self._close_shards(wait=False)
        for channel in list(self._confirming):
            self._wanted.discard(channel)
        for waiter in self._confirming.values():
            if not waiter.done():
                waiter.set_exception(BusUnavailable(why))
        self._confirming.clear()
        self._lost = None

    async def close(self) -> None:
        """Close everything and forget every channel; the end of it."""
        await self._close_shards(wait=True)
        for waiter in self._confirming.values():
            if not waiter.done():
                waiter.set_exception(BusUnavailable("the bus is closed"))
        self._confirming.clear()
        self._wanted.clear()

    async def _close_shards(self, *, wait: bool) -> None:
        self._drops += 1
        readers, self._readers = self._readers, {}
        for task in readers.values():
            task.cancel()
        await asyncio.gather(*readers.values(), return_exceptions=True)
        shards, self._shards = self._shards, {}
        for shard in shards.values():
            await shard.disconnect(wait=wait)

    # -- shards ----------------------------------------------------------------------------

    async def _shard(self, address: Address) -> ShardConnection:
        """The connection to *address*, opened (and its reader started) if there is none.

        Raises one of LOST_ERRORS, also when the shards are dropped while it opens (a loss
        elsewhere: the recovery that follows opens its own).
        """
        shard = self._shards.get(address)
        if shard is not None:
            return shard
        async with self._connect_lock:
            shard = self._shards.get(address)
            if shard is not None:
                return shard
            shard = ShardConnection(
                address,
                keys=self._keys,
                options=self._options,
                on_message=self._on_message,
                wanted=self._wanted.__contains__,
            )
            drops = self._drops
            await shard.connect()
            if self._drops != drops:
                await shard.disconnect()
                raise RedisConnectionError(f"the shards were dropped while {shard.name} opened")
            self._shards[address] = shard
            self._readers[address] = asyncio.create_task(
                self._read(shard), name=f"herald-cluster-pubsub-{shard.name}"
            )
            return shard

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """See :meth:`herald_contract.redis_cluster_bus.RedisClusterBus.subscribe`."""
        self._lifecycle.require(BusState.LIVE)
        waiter = self._confirming.get(channel)
        if waiter is None and channel in self._wanted:
            return
        if waiter is None:
            waiter = await self._send_subscribe(channel)
        if waiter is not None:
            await asyncio.shield(waiter)

    async def _send_subscribe(self, channel: str) -> _Waiter | None:
        live = self._keys.live(channel)
        try:
            shard = await self._shard(self._locate(live))
        except LOST_ERRORS as exc:
            raise BusUnavailable(f"subscribe to {channel!r}: {exc}") from exc
        async with shard.write_lock:
            self._lifecycle.require(BusState.LIVE)
            if channel in self._wanted:
                return self._confirming.get(channel)
            if self._shards.get(shard.address) is not shard:
                raise BusUnavailable(f"subscribe to {channel!r}: the shard connection was lost")
            waiter = shard.expect_subscribe(channel)
            self._wanted.add(channel)
            shard.channels.add(channel)
            self._confirming[channel] = waiter
            waiter.add_done_callback(lambda _: self._confirmed(channel, waiter))
            try:
                await shard.send("SSUBSCRIBE", live)
            except LOST_ERRORS as exc:
                raise BusUnavailable(f"subscribe to {channel!r}: {exc}") from exc
            return waiter

    def _confirmed(self, channel: str, waiter: _Waiter) -> None:
        if self._confirming.get(channel) is waiter:
            del self._confirming[channel]

    async def unsubscribe(self, channel: str) -> None:
        """See :meth:`herald_contract.redis_cluster_bus.RedisClusterBus.unsubscribe`."""
        if channel not in self._wanted:
            return
        self._wanted.discard(channel)
        self._confirming.pop(channel, None)
        shard = next((s for s in self._shards.values() if channel in s.channels), None)
        if shard is None:
            return
        async with shard.write_lock:
            shard.channels.discard(channel)
            shard.expect_unsubscribe(channel)
            try:
                await shard.send("SUNSUBSCRIBE", self._keys.live(channel))
            except LOST_ERRORS as exc:
                logger.info("unsubscribe %r on a broken connection: %s", channel, exc)

    async def resubscribe(self) -> None:
        """Subscribe every wanted channel at the primary that owns it; return once confirmed.

        One SSUBSCRIBE per slot (every channel of one command must share a slot), in batches
        of at most :data:`RESUBSCRIBE_BATCH`. Call it after :meth:`drop` with a fresh slot map;
        raises one of LOST_ERRORS when a shard fails first.
        """
        groups: dict[Address, dict[int, list[str]]] = {}
        for channel in sorted(self._wanted):
            live = self._keys.live(channel)
            groups.setdefault(self._locate(live), {}).setdefault(self._slot_of(live), [])
            groups[self._locate(live)][self._slot_of(live)].append(channel)
        waiters: list[_Waiter] = []
        lost = asyncio.get_running_loop().create_future() if self._lost is None else self._lost
        self._lost = lost
        async with asyncio.timeout(self._options.socket_timeout_s + self._options.ping_interval_s):
            for address, slots in groups.items():
                shard = await self._shard(address)
                async with shard.write_lock:
                    for channels in slots.values():
                        for batch in batches(channels, RESUBSCRIBE_BATCH):
                            waiters.extend(shard.expect_subscribe(c) for c in batch)
                            shard.channels.update(batch)
                            await shard.send("SSUBSCRIBE", *map(self._keys.live, batch))
            if not waiters:
                return
            confirmed = asyncio.gather(*waiters)
            # A loss ends the wait and cancels it: nobody awaits it then, so its outcome is
            # taken here (asyncio would log "exception was never retrieved", an ERROR).
            confirmed.add_done_callback(_take_outcome)
            try:
                await asyncio.wait([confirmed, lost], return_when=asyncio.FIRST_COMPLETED)
                if lost.done():
                    raise _as_lost(lost.result())
                confirmed.result()
            except BusUnavailable as exc:
                raise RedisConnectionError(str(exc)) from exc
            finally:
                if not confirmed.done():
                    confirmed.cancel()


def _take_outcome(future: asyncio.Future[list[None]]) -> None:
    if not future.cancelled():
        future.exception()


def _as_lost(exc: BaseException) -> Exception:
    if isinstance(exc, LOST_ERRORS):
        return exc
    return RedisConnectionError(f"cluster pub/sub failed: {exc!r}")
