"""What the Redis bus and the Redis Cluster bus share: lifecycle, recovery, calling out.

:class:`RecoveringBus` holds the plumbing both facades run the same way: construction
settings, ``start``/``close``, the LIVE -> RECOVERING -> LIVE moves with their observer and
listener calls, publish and history through :class:`herald_contract.redis_scripts.PublishScripts`,
and failure-proof calls to the listener and the observer. A subclass says how to open and
connect its clients (:meth:`RecoveringBus._open`, :meth:`RecoveringBus._connect`), how one
reconnect attempt goes (:meth:`RecoveringBus._restore_once`), how its reader waits for a
loss (:meth:`RecoveringBus._run`) and how many pub/sub connections it holds; the words of
its log lines and error messages are class attributes, so each bus says what it always said.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

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
from herald_contract.history import HistorySettings, Retention
from herald_contract.keys import KeyLayout
from herald_contract.lifecycle import BusLifecycle, BusState
from herald_contract.redis_scripts import PublishScripts

_Target = TypeVar("_Target")
_Result = TypeVar("_Result")

CONNECTED = (BusState.LIVE, BusState.RECOVERING)
"""States in which publish and history are tried (Redis may answer while RECOVERING)."""


class PubSubLike(Protocol):
    """What a bus asks of its pub/sub connection(s)."""

    @property
    def channel_count(self) -> int: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def resubscribe(self) -> None: ...

    async def drop(self, why: str) -> None: ...

    async def close(self) -> None: ...


class ClientLike(Protocol):
    """What a bus asks of its command client, beyond what its own subclass uses."""

    def aclose(self) -> Awaitable[None]: ...


_PubSub = TypeVar("_PubSub", bound=PubSubLike)
_Client = TypeVar("_Client", bound=ClientLike)


class RecoveringBus(Generic[_PubSub, _Client]):
    """The shared part of :class:`herald_contract.redis_bus.RedisBus` and
    :class:`herald_contract.redis_cluster_bus.RedisClusterBus` (see the module docstring).
    """

    _logger: ClassVar[logging.Logger]
    _name: ClassVar[str]
    """For the lifecycle's error messages: "Redis", "Redis Cluster"."""
    _unreachable: ClassVar[str]
    """Ends "cannot connect to ..." when start fails."""
    _lost_errors: ClassVar[tuple[type[BaseException], ...]]
    _lose_action: ClassVar[str]
    _lost_why: ClassVar[str]
    _reconnect_what: ClassVar[str]
    _restored_log: ClassVar[str]
    _reader_name: ClassVar[str]
    _reader_died_log: ClassVar[str]

    def __init__(
        self,
        *,
        keys: KeyLayout,
        history_size: int,
        history_ttl_s: float,
        meta_ttl_s: float,
        idempotency_ttl_s: float,
        kind_retention: Mapping[str, Retention] | None = None,
        backoff: Backoff | None,
        observer: BusObserver | None,
        ping_interval_s: float,
        socket_timeout_s: float,
    ) -> None:
        self._keys = keys
        self._settings = HistorySettings(
            history_size, history_ttl_s, meta_ttl_s, idempotency_ttl_s, dict(kind_retention or {})
        )
        self._backoff = backoff if backoff is not None else Backoff()
        self._observer = observer
        self._ping_interval_s = ping_interval_s
        self._socket_timeout_s = socket_timeout_s
        self._lifecycle = BusLifecycle(self._name)
        self._listener: BusListener | None = None
        self._client: _Client | None = None
        self._scripts: PublishScripts | None = None
        self._pubsub: _PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lost_at = 0.0
        """When the last loss was noticed (time.monotonic), for the observer."""

    # -- what a subclass provides ------------------------------------------------------------

    def _open(self) -> None:
        """Create ``_client``, ``_scripts`` and ``_pubsub``; no I/O."""
        raise NotImplementedError

    async def _connect(self) -> None:
        """The first connection, in :meth:`start`; raises ``_lost_errors`` when Redis is down."""
        raise NotImplementedError

    async def _run(self) -> None:
        """The reader task: wait for a loss, then ``await self._lose()`` and ``_recover``."""
        raise NotImplementedError

    async def _restore_once(self) -> None:
        """One reconnect attempt; raises ``_lost_errors`` (after dropping the pub/sub)."""
        raise NotImplementedError

    def _pubsub_connections(self) -> int:
        """Pub/sub connections open now, for a :class:`ShardObserver`."""
        raise NotImplementedError

    async def _command(self, call: Awaitable[_Result]) -> _Result:
        """Await a publish or history *call*; a subclass may translate its errors."""
        return await call

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> BusState:
        return self._lifecycle.state

    @property
    def live(self) -> bool:
        return self._lifecycle.live

    async def start(self, listener: BusListener) -> None:
        """Connect and start the reader; raise BusUnavailable if Redis does not answer.

        Raises :class:`herald_contract.errors.BusStateError` unless the bus is NEW.
        """
        self._lifecycle.expect(BusState.NEW, "start")
        self._open()
        try:
            await self._connect()
        except BaseException as exc:
            await self._close_clients()
            if isinstance(exc, self._lost_errors):
                raise BusUnavailable(f"cannot connect to {self._unreachable}: {exc}") from exc
            raise
        self._listener = listener
        self._lifecycle.move(BusState.LIVE, "start")
        self._observe(lambda observer: observer.live_changed(True))
        self._observe_shards()
        self._reader = asyncio.create_task(self._run(), name=self._reader_name)
        self._reader.add_done_callback(self._log_reader_end)

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
        self._lifecycle.require(*CONNECTED)
        assert self._scripts is not None
        return await self._command(self._scripts.publish(channel, packed_data, event_id=event_id))

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`herald_contract.bus.Bus.history`; works while RECOVERING if Redis answers."""
        self._lifecycle.require(*CONNECTED)
        assert self._scripts is not None
        return await self._command(self._scripts.history(channel, since, limit))

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """See :meth:`herald_contract.bus.Bus.history_many`: one pipelined round trip."""
        self._lifecycle.require(*CONNECTED)
        assert self._scripts is not None
        return await self._command(self._scripts.history_many(reads))

    async def positions(self, channels: Sequence[str]) -> list[StreamPosition]:
        """See :meth:`herald_contract.bus.Bus.positions`: one pipelined round trip."""
        self._lifecycle.require(*CONNECTED)
        assert self._scripts is not None
        return await self._command(self._scripts.positions(channels))

    # -- loss and recovery -----------------------------------------------------------------

    def _on_message(self, channel: str, envelope: bytes) -> None:
        # While RECOVERING the listener is told nothing: it repairs from history instead.
        if self._lifecycle.live:
            self._notify(lambda listener: listener.on_publication(channel, envelope))

    async def _lose(self) -> None:
        """Enter RECOVERING: drop the connection(s), fail unconfirmed subscribes, tell everyone."""
        assert self._pubsub is not None
        self._lifecycle.move(BusState.RECOVERING, self._lose_action)
        self._lost_at = time.monotonic()
        await self._pubsub.drop(self._lost_why)
        self._observe(lambda observer: observer.live_changed(False))
        self._observe_shards()
        self._notify(lambda listener: listener.on_bus_lost())

    async def _recover(self, reason: str) -> None:
        """Reconnect with backoff until every wanted channel is confirmed; back to LIVE."""
        _, attempts = await retry_until_done(
            self._restore_once,
            self._backoff,
            retry_on=self._lost_errors,
            what=self._reconnect_what,
        )
        self._lifecycle.move(BusState.LIVE, "restore")
        self._observe_recovered(reason)
        self._observe(lambda observer: observer.reconnected())
        self._observe(lambda observer: observer.live_changed(True))
        self._logger.info(self._restored_log, attempts)
        self._notify(lambda listener: listener.on_bus_restored())

    # -- calling out -----------------------------------------------------------------------

    def _notify(self, call: Callable[[BusListener], None]) -> None:
        """Call the listener, if any; its failures are logged, never allowed to stop the reader."""
        self._call_out("listener", self._listener, call)

    def _observe(self, call: Callable[[BusObserver], None]) -> None:
        """Call the observer, if any; its failures are logged, never allowed to stop the reader."""
        self._call_out("observer", self._observer, call)

    def _observe_shards(self) -> None:
        """Tell a :class:`ShardObserver` how many pub/sub connections are open now."""
        if isinstance(self._observer, ShardObserver):
            count = self._pubsub_connections()
            self._call_out("observer", self._observer, lambda o: o.shard_connections(count))

    def _observe_recovered(self, reason: str) -> None:
        """Tell a :class:`ShardObserver` about the recovery that just ended."""
        if isinstance(self._observer, ShardObserver):
            channels = 0 if self._pubsub is None else self._pubsub.channel_count
            seconds = max(0.0, time.monotonic() - self._lost_at)
            self._call_out(
                "observer", self._observer, lambda o: o.recovered(reason, channels, seconds)
            )
            self._observe_shards()

    def _call_out(self, role: str, target: _Target | None, call: Callable[[_Target], None]) -> None:
        if target is None:
            return
        try:
            call(target)
        except Exception:
            self._logger.exception("the bus %s failed", role)

    def _log_reader_end(self, task: asyncio.Task[None]) -> None:
        # The reader only ends by cancellation (close); anything else is a bug that leaves the
        # bus RECOVERING for good, which must not go unnoticed.
        if not task.cancelled() and task.exception() is not None:
            self._logger.error(self._reader_died_log, exc_info=task.exception())
