"""The Redis bus: pub/sub for live delivery, streams for history, for a fleet of workers.

One bus per worker process holds two things:

* a pooled client for publish and history, through :class:`publisher.publish.PublishScripts`
  (the same Lua scripts any :class:`publisher.publish.Publisher` uses);
* ONE pub/sub connection, read by one reader task, subscribed with SUBSCRIBE to exact channel
  names (``KeyLayout.live``), never PSUBSCRIBE, so Redis does no pattern matching per message.

The pub/sub connection is a raw redis-py connection rather than redis-py's ``PubSub``: that
class reconnects and resubscribes silently inside its reads (see ``PubSub.on_connect``), while
this bus must know when the connection was lost (publications in the gap are gone, the
listener must repair from history) and when each SUBSCRIBE was confirmed. The local set of
wanted channels is the source of truth; Redis is told about it again after each reconnect.

Lifecycle (:class:`RedisBusState`)::

    NEW --start()--> LIVE --connection lost--> RECOVERING --resubscribed--> LIVE
                      \\________________________________________________/--close()--> CLOSED

In RECOVERING, the reader reconnects with full-jitter exponential backoff, resubscribes every
wanted channel, waits for every confirmation, checks that commands (history) are answered
too, then calls ``on_bus_restored``. Publications that arrive before that call are dropped:
the listener repairs them from history, read after ``on_bus_restored``.
:meth:`RedisBus.subscribe` raises :class:`BusUnavailable` at once outside LIVE rather than
waiting: a client can retry, and a waiting worker would only hide the outage from its
readiness probe. Publish and history go through the command client and keep working while
RECOVERING whenever Redis answers them.

A silent connection (a blackholed socket) is found by PING: when nothing arrives for
``ping_interval_s`` the reader sends one; when nothing arrives for another interval, the
connection counts as lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from herald_contract.bus import (
    BusListener,
    BusUnavailable,
    HistoryRead,
    HistoryResult,
    PublishResult,
)
from herald_contract.envelope import StreamPosition
from herald_contract.history import HistorySettings
from herald_contract.keys import KeyLayout
from herald_contract.redis_scripts import PublishScripts, command_client
from socketsrv.metrics import Metrics

logger = logging.getLogger(__name__)

RESUBSCRIBE_BATCH = 1000
"""Channels per SUBSCRIBE command when resubscribing after a reconnect."""

_LOST_ERRORS = (RedisError, OSError, TimeoutError)

_Waiter = asyncio.Future[None]


class RedisBusState(enum.Enum):
    NEW = "new"
    LIVE = "live"
    RECOVERING = "recovering"
    CLOSED = "closed"


def backoff_delay_s(attempt: int, min_s: float, max_s: float, rng: random.Random | None) -> float:
    """The pause before reconnect *attempt* (0-based): full jitter, doubling up to *max_s*.

    Drawn uniformly between *min_s* and the doubled cap, so a fleet that lost Redis at the
    same instant does not come back at the same instant.
    """
    cap = min(max_s, min_s * 2.0 ** min(attempt, 32))
    return (rng or random).uniform(min_s, max(min_s, cap))


def _retrieve(waiter: _Waiter) -> None:
    # A waiter whose subscribe() was cancelled may fail with nobody awaiting it; fetching
    # the exception here keeps asyncio from logging "exception was never retrieved".
    if not waiter.cancelled():
        waiter.exception()


class RedisBus:
    """A :class:`herald_contract.bus.Bus` over Redis (see the module docstring).

    Construction does no I/O; :meth:`start` connects. *keys* and the history settings must
    match those of every publisher of the installation.
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
        reconnect_min_s: float = 0.05,
        reconnect_max_s: float = 2.0,
        metrics: Metrics | None = None,
        ping_interval_s: float = 5.0,
        socket_timeout_s: float = 5.0,
    ) -> None:
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        self._url = redis_url
        self._keys = keys
        self._settings = HistorySettings(history_size, history_ttl_s, meta_ttl_s, idempotency_ttl_s)
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._metrics = metrics
        self._ping_interval_s = ping_interval_s
        self._socket_timeout_s = socket_timeout_s
        self._state = RedisBusState.NEW
        self._listener: BusListener | None = None
        self._scripts: PublishScripts | None = None
        self._client: Redis | None = None
        self._pool: ConnectionPool | None = None
        self._conn: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._wanted: set[str] = set()
        """Channels the bus should be subscribed to: the source of truth."""
        self._confirming: dict[str, _Waiter] = {}
        """Channels whose SUBSCRIBE is not confirmed yet, with the waiter of that command."""
        self._replies: dict[str, deque[_Waiter | None]] = {}
        """Per channel, the (UN)SUBSCRIBE replies still due, in the order commands were sent
        (Redis answers in order); a waiter for a SUBSCRIBE, None for an UNSUBSCRIBE."""

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> RedisBusState:
        return self._state

    @property
    def live(self) -> bool:
        return self._state is RedisBusState.LIVE

    async def start(self, listener: BusListener) -> None:
        """Connect the pub/sub connection and start the reader; raise BusUnavailable if down."""
        if self._state is not RedisBusState.NEW:
            raise RuntimeError(f"cannot start a bus that is {self._state.value}")
        client = command_client(self._url, socket_timeout_s=self._socket_timeout_s)
        self._pool = ConnectionPool.from_url(
            self._url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=self._socket_timeout_s,
            # No socket timeout: the reader waits for messages as long as it likes and finds
            # dead connections with PING instead.
            socket_timeout=None,
            # RESP2 delivers messages as plain replies. Under RESP3 (redis-py's default) they
            # are push frames, which redis-py's parser logs one by one (formatting each
            # message even when debug logging is off) before handing them over.
            protocol=2,
        )
        self._client = client
        self._scripts = PublishScripts(client, self._keys, self._settings)
        try:
            conn = await self._connect()
        except BaseException as exc:
            await self._close_clients()
            if isinstance(exc, _LOST_ERRORS):
                raise BusUnavailable(f"cannot connect to Redis: {exc}") from exc
            raise
        self._listener = listener
        self._conn = conn
        self._state = RedisBusState.LIVE
        if self._metrics is not None:
            self._metrics.bus_live.set(1)
        self._reader = asyncio.create_task(self._run(conn), name="herald-redis-bus-reader")
        self._reader.add_done_callback(_log_reader_end)

    async def close(self) -> None:
        """Stop the reader, fail pending subscribes and close every connection; idempotent."""
        if self._state is RedisBusState.CLOSED:
            return
        started = self._state is not RedisBusState.NEW
        self._state = RedisBusState.CLOSED
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        conn, self._conn = self._conn, None
        if conn is not None:
            # Waiting for the socket to close keeps the event loop from ending with it open.
            await _disconnect(conn, wait=True)
        self._fail_waiters("the bus is closed")
        self._wanted.clear()
        self._listener = None
        await self._close_clients()
        if self._metrics is not None and started:
            self._metrics.bus_live.set(0)

    async def _close_clients(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    # -- subscriptions ---------------------------------------------------------------------

    def _require(self, *states: RedisBusState) -> None:
        if self._state not in states:
            raise BusUnavailable(f"the Redis bus is {self._state.value}")

    async def subscribe(self, channel: str) -> None:
        """Subscribe to *channel*; return once Redis confirmed the subscription.

        Every publication made after the return is delivered (while the connection lasts).
        Raises :class:`BusUnavailable` when the bus is not LIVE or the connection is lost
        before the confirmation; the channel is then not subscribed. Cancelling the call
        may leave the channel subscribed: call :meth:`unsubscribe`.
        """
        self._require(RedisBusState.LIVE)
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
            self._require(RedisBusState.LIVE)
            if channel in self._wanted:
                return self._confirming.get(channel)
            conn = self._conn
            assert conn is not None
            waiter: _Waiter = asyncio.get_running_loop().create_future()
            waiter.add_done_callback(_retrieve)
            self._wanted.add(channel)
            self._confirming[channel] = waiter
            self._replies.setdefault(channel, deque()).append(waiter)
            try:
                await self._send(conn, "SUBSCRIBE", self._keys.live(channel))
            except _LOST_ERRORS as exc:
                # The reader sees the broken connection and fails the waiter; say why here.
                raise BusUnavailable(f"subscribe to {channel!r}: {exc}") from exc
            return waiter

    async def unsubscribe(self, channel: str) -> None:
        """Stop live delivery of *channel* at once; unknown channels are ignored.

        Never raises for a lost connection: the channel leaves the local set, so it is not
        resubscribed after the reconnect.
        """
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
            except _LOST_ERRORS as exc:
                logger.info("unsubscribe %r on a broken connection: %s", channel, exc)

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

    # -- publish and history ---------------------------------------------------------------

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """See :meth:`herald_contract.bus.Bus.publish`; works while RECOVERING if Redis answers."""
        self._require(RedisBusState.LIVE, RedisBusState.RECOVERING)
        assert self._scripts is not None
        return await self._scripts.publish(channel, packed_data, event_id=event_id)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`herald_contract.bus.Bus.history`; works while RECOVERING if Redis answers."""
        self._require(RedisBusState.LIVE, RedisBusState.RECOVERING)
        assert self._scripts is not None
        return await self._scripts.history(channel, since, limit)

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """See :meth:`herald_contract.bus.Bus.history_many`: one pipelined round trip."""
        self._require(RedisBusState.LIVE, RedisBusState.RECOVERING)
        assert self._scripts is not None
        return await self._scripts.history_many(reads)

    # -- the reader ------------------------------------------------------------------------

    async def _connect(self) -> AbstractConnection:
        assert self._pool is not None
        # redis-py leaves these two unannotated.
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(self._socket_timeout_s):
                await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            await _disconnect(conn)
            raise
        return conn

    async def _run(self, conn: AbstractConnection) -> None:
        """The reader task: read until the connection is lost, recover, read again."""
        while True:
            try:
                await self._read(conn)
            except _LOST_ERRORS as exc:
                logger.warning("Redis bus connection lost: %s", exc)
            except Exception:
                # A bug, not an outage; a fresh connection is the cleanest state to go on from.
                logger.exception("Redis bus reader failed; reconnecting")
            await self._lose(conn)
            conn = await self._recover()

    async def _read(self, conn: AbstractConnection) -> None:
        """Dispatch replies until the connection fails (raises; never returns normally)."""
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

    def _dispatch(self, reply: object) -> None:
        """Handle one pub/sub reply: a message, a (un)subscribe confirmation or a pong."""
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, name, payload = reply[0], reply[1], reply[2]
        if not isinstance(name, bytes):
            return
        channel = self._keys.channel_of_live(name.decode("utf-8", "replace"))
        if channel is None:
            return
        if kind == b"message":
            if self._state is RedisBusState.LIVE and channel in self._wanted:
                self._notify(lambda listener: listener.on_publication(channel, payload))
        elif kind in (b"subscribe", b"unsubscribe"):
            self._confirmed(channel)

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

    def _notify(self, call: Callable[[BusListener], None]) -> None:
        """Call the listener; its failures are logged, never allowed to stop the reader."""
        if self._listener is None:
            return
        try:
            call(self._listener)
        except Exception:
            logger.exception("the bus listener failed")

    async def _lose(self, conn: AbstractConnection) -> None:
        """Enter RECOVERING: drop the connection, fail unconfirmed subscribes, tell everyone."""
        self._state = RedisBusState.RECOVERING
        self._conn = None
        await _disconnect(conn)
        # An unconfirmed channel's subscribe() raises, so its caller does not count it.
        for channel in list(self._confirming):
            self._wanted.discard(channel)
        self._fail_waiters("the Redis connection was lost")
        if self._metrics is not None:
            self._metrics.bus_live.set(0)
        self._notify(lambda listener: listener.on_bus_lost())

    def _fail_waiters(self, why: str) -> None:
        for due in self._replies.values():
            for waiter in due:
                if waiter is not None and not waiter.done():
                    waiter.set_exception(BusUnavailable(why))
        self._replies.clear()
        self._confirming.clear()

    async def _recover(self) -> AbstractConnection:
        """Reconnect with backoff until every wanted channel is confirmed; back to LIVE."""
        attempt = 0
        while True:
            delay_s = backoff_delay_s(attempt, self._reconnect_min_s, self._reconnect_max_s, None)
            await asyncio.sleep(delay_s)
            attempt += 1
            try:
                conn = await self._connect()
            except _LOST_ERRORS as exc:
                logger.info("Redis bus reconnect attempt %d failed: %s", attempt, exc)
                continue
            # Owned by the bus from here, so that close() closes it whenever it cancels us;
            # unsubscribe() may already send UNSUBSCRIBE on it, which is harmless.
            self._conn = conn
            try:
                await self._resubscribe(conn)
                await self._check_commands()
            except _LOST_ERRORS as exc:
                logger.info("Redis bus resubscribe attempt %d failed: %s", attempt, exc)
                self._conn = None
                self._fail_waiters("the Redis connection was lost")
                await _disconnect(conn)
                continue
            break
        self._state = RedisBusState.LIVE
        if self._metrics is not None:
            self._metrics.bus_reconnects.inc()
            self._metrics.bus_live.set(1)
        logger.info("Redis bus restored after %d attempt(s)", attempt)
        self._notify(lambda listener: listener.on_bus_restored())
        return conn

    async def _check_commands(self) -> None:
        """PING through the command client, so that "restored" means history works too.

        A restarted Redis accepts SUBSCRIBE while it is still loading its data but answers
        LOADING to the history script; a listener that repairs its channels on
        ``on_bus_restored`` would then fail and have to guess when to try again.
        """
        assert self._client is not None
        async with asyncio.timeout(self._socket_timeout_s):
            await self._client.ping()

    async def _resubscribe(self, conn: AbstractConnection) -> None:
        """Subscribe *conn* to every wanted channel and read until all are confirmed."""
        async with asyncio.timeout(self._socket_timeout_s + self._ping_interval_s):
            async with self._write_lock:
                waiters = [self._expect_subscribe(channel) for channel in self._wanted]
                for batch in _batches(sorted(self._wanted), RESUBSCRIBE_BATCH):
                    await self._send(conn, "SUBSCRIBE", *map(self._keys.live, batch))
            for waiter in waiters:
                while not waiter.done():
                    self._dispatch(await _next_reply(conn, timeout_s=None))

    def _expect_subscribe(self, channel: str) -> _Waiter:
        waiter: _Waiter = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(_retrieve)
        self._replies.setdefault(channel, deque()).append(waiter)
        return waiter


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _next_reply(conn: AbstractConnection, *, timeout_s: float | None) -> object:
    """The next reply or push message; None when *timeout_s* passed without one.

    ``push_request`` matters only if the URL asks for RESP3, where pub/sub messages and
    subscribe confirmations are push frames the parser would otherwise skip; with RESP2
    (the bus's choice) they are ordinary replies. ``disconnect_on_error`` is off because losing the
    connection is the reader's business (see ``RedisBus._lose``).
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
    except _LOST_ERRORS as exc:
        logger.debug("closing a Redis connection: %s", exc)


def _log_reader_end(task: asyncio.Task[None]) -> None:
    # The reader only ends by cancellation (close); anything else is a bug that leaves the
    # bus RECOVERING for good, which must not go unnoticed.
    if not task.cancelled() and task.exception() is not None:
        logger.error("Redis bus reader died", exc_info=task.exception())
