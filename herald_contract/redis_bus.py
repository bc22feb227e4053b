"""The Redis bus: pub/sub for live delivery, streams for history, for a fleet of workers.

One bus per worker process holds two things:

* a pooled client for publish and history, through
  :class:`herald_contract.redis_scripts.PublishScripts` (the same Lua scripts every
  publisher runs);
* ONE pub/sub connection, read by one reader task (:mod:`herald_contract.redis_pubsub`).

Lifecycle (:class:`herald_contract.lifecycle.BusState`)::

    NEW --start()--> LIVE --connection lost--> RECOVERING --resubscribed--> LIVE
                      \\________________________________________________/--close()--> CLOSED

In RECOVERING, the reader reconnects with full-jitter exponential backoff
(:mod:`herald_contract.backoff`), resubscribes every wanted channel, waits for every
confirmation, checks that commands (history) are answered too, then calls
``on_bus_restored``. Publications that arrive before that call are dropped: the listener
repairs them from history, read after ``on_bus_restored``. :meth:`RedisBus.subscribe` raises
:class:`BusUnavailable` at once outside LIVE rather than waiting: a client can retry, and a
waiting worker would only hide the outage from its readiness probe. Publish and history go
through the command client and keep working while RECOVERING whenever Redis answers them.

Metrics enter through a :class:`herald_contract.bus.BusObserver` that the caller passes; the
bus imports no metrics library.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from redis.asyncio import Redis
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
from herald_contract.envelope import StreamPosition
from herald_contract.history import HistorySettings
from herald_contract.keys import KeyLayout
from herald_contract.lifecycle import BusLifecycle, BusState
from herald_contract.redis_pubsub import LOST_ERRORS, RedisPubSub
from herald_contract.redis_scripts import PublishScripts, command_client

logger = logging.getLogger(__name__)

_Target = TypeVar("_Target")

_CONNECTED = (BusState.LIVE, BusState.RECOVERING)
"""States in which publish and history are tried (Redis may answer while RECOVERING)."""


class RedisBus:
    """A :class:`herald_contract.bus.Bus` over Redis (see the module docstring).

    Construction does no I/O; :meth:`start` connects. *keys* and the history settings must
    match those of every publisher of the installation. *backoff* paces reconnects;
    *observer* hears about liveness and reconnects (metrics).
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
        self._url = redis_url
        self._keys = keys
        self._settings = HistorySettings(history_size, history_ttl_s, meta_ttl_s, idempotency_ttl_s)
        self._backoff = backoff if backoff is not None else Backoff()
        self._observer = observer
        self._ping_interval_s = ping_interval_s
        self._socket_timeout_s = socket_timeout_s
        self._lifecycle = BusLifecycle("Redis")
        self._listener: BusListener | None = None
        self._client: Redis | None = None
        self._scripts: PublishScripts | None = None
        self._pubsub: RedisPubSub | None = None
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

    async def start(self, listener: BusListener) -> None:
        """Connect the pub/sub connection and start the reader; raise BusUnavailable if down.

        Raises :class:`herald_contract.errors.BusStateError` unless the bus is NEW.
        """
        self._lifecycle.expect(BusState.NEW, "start")
        self._client = command_client(self._url, socket_timeout_s=self._socket_timeout_s)
        self._scripts = PublishScripts(self._client, self._keys, self._settings)
        self._pubsub = RedisPubSub(
            self._url,
            keys=self._keys,
            lifecycle=self._lifecycle,
            on_message=self._on_message,
            ping_interval_s=self._ping_interval_s,
            socket_timeout_s=self._socket_timeout_s,
        )
        try:
            await self._pubsub.connect()
        except BaseException as exc:
            await self._close_clients()
            if isinstance(exc, LOST_ERRORS):
                raise BusUnavailable(f"cannot connect to Redis: {exc}") from exc
            raise
        self._listener = listener
        self._lifecycle.move(BusState.LIVE, "start")
        self._observe(lambda observer: observer.live_changed(True))
        self._observe_shards()
        self._reader = asyncio.create_task(self._run(), name="herald-redis-bus-reader")
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

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Subscribe to *channel*; return once Redis confirmed the subscription.

        Every publication made after the return is delivered (while the connection lasts).
        Raises :class:`BusUnavailable` when the bus is not LIVE or the connection is lost
        before the confirmation; the channel is then not subscribed. Cancelling the call
        may leave the channel subscribed: call :meth:`unsubscribe`.
        """
        self._lifecycle.require(BusState.LIVE)
        assert self._pubsub is not None
        await self._pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop live delivery of *channel* at once; unknown channels are ignored.

        Never raises for a lost connection: the channel leaves the local set, so it is not
        resubscribed after the reconnect.
        """
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel)

    # -- publish and history ---------------------------------------------------------------

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """See :meth:`herald_contract.bus.Bus.publish`; works while RECOVERING if Redis answers."""
        self._lifecycle.require(*_CONNECTED)
        assert self._scripts is not None
        return await self._scripts.publish(channel, packed_data, event_id=event_id)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`herald_contract.bus.Bus.history`; works while RECOVERING if Redis answers."""
        self._lifecycle.require(*_CONNECTED)
        assert self._scripts is not None
        return await self._scripts.history(channel, since, limit)

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """See :meth:`herald_contract.bus.Bus.history_many`: one pipelined round trip."""
        self._lifecycle.require(*_CONNECTED)
        assert self._scripts is not None
        return await self._scripts.history_many(reads)

    # -- the reader ------------------------------------------------------------------------

    async def _run(self) -> None:
        """The reader task: read until the connection is lost, recover, read again."""
        assert self._pubsub is not None
        while True:
            try:
                await self._pubsub.read_until_lost()
            except LOST_ERRORS as exc:
                logger.warning("Redis bus connection lost: %s", exc)
                reason = loss_reason(exc)
            except Exception:
                # A bug, not an outage; a fresh connection is the cleanest state to go on from.
                logger.exception("Redis bus reader failed; reconnecting")
                reason = "reader_error"
            await self._lose()
            await self._recover(reason)

    def _on_message(self, channel: str, envelope: bytes) -> None:
        # While RECOVERING the listener is told nothing: it repairs from history instead.
        if self._lifecycle.live:
            self._notify(lambda listener: listener.on_publication(channel, envelope))

    async def _lose(self) -> None:
        """Enter RECOVERING: drop the connection, fail unconfirmed subscribes, tell everyone."""
        assert self._pubsub is not None
        self._lifecycle.move(BusState.RECOVERING, "lose the connection of")
        self._lost_at = time.monotonic()
        await self._pubsub.drop("the Redis connection was lost")
        self._observe(lambda observer: observer.live_changed(False))
        self._observe_shards()
        self._notify(lambda listener: listener.on_bus_lost())

    async def _recover(self, reason: str) -> None:
        """Reconnect with backoff until every wanted channel is confirmed; back to LIVE."""
        _, attempts = await retry_until_done(
            self._restore_once, self._backoff, retry_on=LOST_ERRORS, what="Redis bus reconnect"
        )
        self._lifecycle.move(BusState.LIVE, "restore")
        self._observe_recovered(reason)
        self._observe(lambda observer: observer.reconnected())
        self._observe(lambda observer: observer.live_changed(True))
        logger.info("Redis bus restored after %d attempt(s)", attempts)
        self._notify(lambda listener: listener.on_bus_restored())

    async def _restore_once(self) -> None:
        """One reconnect attempt: connect, resubscribe, check commands; raises LOST_ERRORS."""
        assert self._pubsub is not None
        await self._pubsub.connect()
        try:
            await self._pubsub.resubscribe()
            await self._check_commands()
        except LOST_ERRORS:
            await self._pubsub.drop("the Redis connection was lost")
            raise

    async def _check_commands(self) -> None:
        """PING through the command client, so that "restored" means history works too.

        A restarted Redis accepts SUBSCRIBE while it is still loading its data but answers
        LOADING to the history script; a listener that repairs its channels on
        ``on_bus_restored`` would then fail and have to guess when to try again.
        """
        assert self._client is not None
        async with asyncio.timeout(self._socket_timeout_s):
            await self._client.ping()

    # -- calling out -----------------------------------------------------------------------

    def _notify(self, call: Callable[[BusListener], None]) -> None:
        """Call the listener, if any; its failures are logged, never allowed to stop the reader."""
        _call_out("listener", self._listener, call)

    def _observe(self, call: Callable[[BusObserver], None]) -> None:
        """Call the observer, if any; its failures are logged, never allowed to stop the reader."""
        _call_out("observer", self._observer, call)

    def _pubsub_connections(self) -> int:
        return 1 if self._lifecycle.live else 0

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


def _call_out(role: str, target: _Target | None, call: Callable[[_Target], None]) -> None:
    if target is None:
        return
    try:
        call(target)
    except Exception:
        logger.exception("the bus %s failed", role)


def loss_reason(exc: BaseException) -> str:
    """The :data:`herald_contract.bus.RECOVERY_REASONS` entry for a reader's *exc*."""
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "ping_timeout"
    return "connection_lost"


def _log_reader_end(task: asyncio.Task[None]) -> None:
    # The reader only ends by cancellation (close); anything else is a bug that leaves the
    # bus RECOVERING for good, which must not go unnoticed.
    if not task.cancelled() and task.exception() is not None:
        logger.error("Redis bus reader died", exc_info=task.exception())
