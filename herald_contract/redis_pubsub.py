"""The pub/sub side of the Redis bus: one connection, its subscriptions, and reading it.

:class:`RedisPubSub` holds ONE raw pub/sub connection at a time, subscribed with SUBSCRIBE to
exact channel names (``KeyLayout.live``), never PSUBSCRIBE, so Redis does no pattern matching
per message. It is a raw redis-py connection rather than redis-py's ``PubSub``: that class
reconnects and resubscribes silently inside its reads (see ``PubSub.on_connect``), while the
bus must know when the connection was lost (publications in the gap are gone, the listener
must repair from history) and when each SUBSCRIBE was confirmed.

The local set of wanted channels is the source of truth; after a reconnect
:meth:`RedisPubSub.resubscribe` tells Redis about it again. Redis answers (UN)SUBSCRIBE
commands in order, so each channel keeps a queue of the replies still due, and a
:meth:`RedisPubSub.subscribe` returns when its own reply arrives.

A silent connection (a blackholed socket) is found by PING: when nothing arrives for
``ping_interval_s`` :meth:`RedisPubSub.read_until_lost` sends one; when nothing arrives for
another interval, the connection counts as lost.

The bus (:mod:`herald_contract.redis_bus`) decides when to connect, read, drop and resubscribe;
this module does the I/O and the book-keeping of each step.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import NoReturn

from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

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
from herald_contract.redis_pools import connection_pool

logger = logging.getLogger(__name__)

RESUBSCRIBE_BATCH = 1000
"""Channels per SUBSCRIBE command when resubscribing after a reconnect."""

LOST_ERRORS = (RedisError, OSError, TimeoutError)
"""What a lost or unusable connection raises."""

_Waiter = Waiter


class RedisPubSub:
    """The pub/sub connection of one Redis bus (see the module docstring).

    *lifecycle* is the bus's: :meth:`subscribe` works only while it is LIVE. *on_message* is
    called, on the reading task, with each message of a wanted channel. Construction does no
    I/O; :meth:`connect` opens a connection and :meth:`close` releases everything.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        keys: KeyLayout,
        lifecycle: BusLifecycle,
        on_message: Callable[[str, bytes], None],
        ping_interval_s: float,
        socket_timeout_s: float,
    ) -> None:
        self._keys = keys
        self._lifecycle = lifecycle
        self._on_message = on_message
        self._ping_interval_s = ping_interval_s
        self._socket_timeout_s = socket_timeout_s
        # A redis+sentinel:// URL: each connect() goes to the current primary (redis_pools.py).
        self._pool = connection_pool(
            redis_url,
            blocking=False,
            socket_timeout_s=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=socket_timeout_s,
            # No socket timeout: the reader waits for messages as long as it likes and finds
            # dead connections with PING instead.
            socket_timeout=None,
            # RESP2 delivers messages as plain replies. Under RESP3 (redis-py's default) they
            # are push frames, which redis-py's parser logs one by one (formatting each
            # message even when debug logging is off) before handing them over.
            protocol=2,
        )
        self._conn: AbstractConnection | None = None
        self._write_lock = asyncio.Lock()
        self._wanted: set[str] = set()
        """Channels the bus should be subscribed to: the source of truth."""
        self._confirming: dict[str, _Waiter] = {}
        """Channels whose SUBSCRIBE is not confirmed yet, with the waiter of that command."""
        self._replies: DueReplies = {}
        """Per channel, the (UN)SUBSCRIBE replies still due, in the order commands were sent
        (Redis answers in order); a waiter for a SUBSCRIBE, None for an UNSUBSCRIBE."""

    # -- the connection --------------------------------------------------------------------

    @property
    def channel_count(self) -> int:
        """Channels wanted now (those a reconnect resubscribes)."""
        return len(self._wanted)

    async def connect(self) -> None:
        """Open a new connection and make it the current one; raises one of LOST_ERRORS.

        Call it with no current connection (first, or after :meth:`drop`).
        """
        assert self._conn is None, "connect() with a connection open"
        # redis-py leaves these two unannotated.
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(self._socket_timeout_s):
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await _disconnect(conn)
            raise
        # Owned from here, so that close() closes it whenever the caller is cancelled;
        # unsubscribe() may already send UNSUBSCRIBE on it, which is harmless.
        self._conn = conn

    async def drop(self, why: str) -> None:
        """Forget the current connection and fail every subscribe still waiting, with *why*.

        An unconfirmed channel leaves the wanted set, so its subscribe() raises and its caller
        does not count it; confirmed channels stay, to be resubscribed.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            await _disconnect(conn)
        for channel in list(self._confirming):
            self._wanted.discard(channel)
        self._fail_waiters(why)

    async def close(self) -> None:
        """Close the connection and the pool and fail waiting subscribes; the end of it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            # Waiting for the socket to close keeps the event loop from ending with it open.
            await _disconnect(conn, wait=True)
        self._fail_waiters("the bus is closed")
        self._wanted.clear()
        await self._pool.aclose()

    def _fail_waiters(self, why: str) -> None:
        fail_waiters(self._replies, why)
        self._confirming.clear()

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """See :meth:`herald_contract.redis_bus.RedisBus.subscribe`."""
        self._lifecycle.require(BusState.LIVE)
        waiter = self._confirming.get(channel)
        if waiter is None and channel in self._wanted:
            return
        if waiter is None:
            waiter = await self._send_subscribe(channel)
        if waiter is not None:
            await asyncio.shield(waiter)

    async def _send_subscribe(self, channel: str) -> _Waiter | None:
        async with self._write_lock:
            # Checked again: the state and the channel may have changed while we waited.
            self._lifecycle.require(BusState.LIVE)
            if channel in self._wanted:
                return self._confirming.get(channel)
            conn = self._conn
            assert conn is not None
            waiter = self._expect_subscribe(channel)
            self._wanted.add(channel)
            self._confirming[channel] = waiter
            try:
                await self._send(conn, "SUBSCRIBE", self._keys.live(channel))
            except LOST_ERRORS as exc:
                # The reader sees the broken connection and fails the waiter; say why here.
                raise BusUnavailable(f"subscribe to {channel!r}: {exc}") from exc
            return waiter

    async def unsubscribe(self, channel: str) -> None:
        """See :meth:`herald_contract.redis_bus.RedisBus.unsubscribe`."""
        if channel not in self._wanted:
            return
        async with self._write_lock:
            if channel not in self._wanted:
                return
            self._wanted.discard(channel)
            self._confirming.pop(channel, None)
            conn = self._conn
            if conn is None:
                return
            self._replies.setdefault(channel, deque()).append(None)
            try:
                await self._send(conn, "UNSUBSCRIBE", self._keys.live(channel))
            except LOST_ERRORS as exc:
                logger.info("unsubscribe %r on a broken connection: %s", channel, exc)

    async def resubscribe(self) -> None:
        """Subscribe the current connection to every wanted channel; return once all confirmed.

        Raises one of LOST_ERRORS (or TimeoutError after a socket timeout and a ping interval)
        when the connection fails first. Messages read meanwhile go to *on_message* as usual.
        """
        conn = self._conn
        assert conn is not None, "resubscribe() without a connection"
        async with asyncio.timeout(self._socket_timeout_s + self._ping_interval_s):
            async with self._write_lock:
                waiters = [self._expect_subscribe(channel) for channel in self._wanted]
                for batch in batches(sorted(self._wanted), RESUBSCRIBE_BATCH):
                    await self._send(conn, "SUBSCRIBE", *map(self._keys.live, batch))
            for waiter in waiters:
                while not waiter.done():
                    self._dispatch(await _next_reply(conn, timeout_s=None))

    def _expect_subscribe(self, channel: str) -> _Waiter:
        return expect_subscribe(self._replies, channel)

    async def _send(self, conn: AbstractConnection, *args: str) -> None:
        """Write one command on the pub/sub connection (hold the write lock)."""
        # send_command would reconnect a closed connection by itself, behind the reader's back.
        if not conn.is_connected:
            raise RedisConnectionError("the pub/sub connection is closed")
        try:
            async with asyncio.timeout(self._socket_timeout_s):
                await conn.send_command(*args, check_health=False)
        except TimeoutError:
            # Redis stopped reading: drop the connection so the reader starts recovering.
            await _disconnect(conn)
            raise

    # -- reading ---------------------------------------------------------------------------

    async def read_until_lost(self) -> NoReturn:
        """Dispatch replies of the current connection until it fails, then raise.

        Raises one of LOST_ERRORS, or TimeoutError when a PING went unanswered.
        """
        conn = self._conn
        assert conn is not None, "read_until_lost() without a connection"
        pinged = False
        while True:
            reply = await _next_reply(conn, timeout_s=self._ping_interval_s)
            if reply is not None:
                pinged = False
                self._dispatch(reply)
                continue
            if pinged:
                raise TimeoutError(f"no reply to PING within {self._ping_interval_s} s")
            pinged = True
            # A write stuck behind the lock means Redis is not reading: then the next silent
            # interval ends the connection without a PING.
            if not self._write_lock.locked():
                async with self._write_lock:
                    await self._send(conn, "PING")

    def _dispatch(self, raw: object) -> None:
        """Handle one reply: a message, a (un)subscribe confirmation or a pong."""
        reply = parse_reply(raw, self._keys)
        if reply is None:
            return
        if reply.kind is ReplyKind.MESSAGE:
            if reply.channel in self._wanted and isinstance(reply.payload, bytes):
                self._on_message(reply.channel, reply.payload)
        else:
            self._confirmed(reply.channel)

    def _confirmed(self, channel: str) -> None:
        due = self._replies.get(channel)
        if not due:
            return
        waiter = due.popleft()
        if not due:
            del self._replies[channel]
        if waiter is None:
            return
        if self._confirming.get(channel) is waiter:
            del self._confirming[channel]
        if not waiter.done():
            waiter.set_result(None)


async def _next_reply(conn: AbstractConnection, *, timeout_s: float | None) -> object:
    """The next reply or push message; None when *timeout_s* passed without one.

    ``push_request`` matters only if the URL asks for RESP3, where pub/sub messages and
    subscribe confirmations are push frames the parser would otherwise skip; with RESP2
    (the bus's choice) they are ordinary replies. ``disconnect_on_error`` is off because
    losing the connection is the bus's business (see :meth:`RedisPubSub.drop`).
    """
    return await conn.read_response(
        timeout=math.inf if timeout_s is None else timeout_s,
        disconnect_on_error=False,
        push_request=True,
    )


async def _disconnect(conn: AbstractConnection, *, wait: bool = False) -> None:
    """Close *conn*, ignoring errors: it is being dropped anyway.

    Without *wait*, the socket closes in the background: the reader may still be blocked
    on it (see redis-py issue #3941 about awaiting a close under a concurrent read).
    """
    try:
        await conn.disconnect(nowait=not wait)
    except LOST_ERRORS as exc:
        logger.debug("closing a Redis connection: %s", exc)
