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
from collections.abc import Mapping
from typing import ClassVar

from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_contract.backoff import Backoff
from herald_contract.bus import BusObserver
from herald_contract.history import Retention
from herald_contract.keys import KeyLayout
from herald_contract.recovering_bus import RecoveringBus
from herald_contract.redis_pubsub import LOST_ERRORS, RedisPubSub
from herald_contract.redis_scripts import PublishScripts, command_client

logger = logging.getLogger(__name__)


class RedisBus(RecoveringBus[RedisPubSub, Redis]):
    """A :class:`herald_contract.bus.Bus` over Redis (see the module docstring).

    Construction does no I/O; :meth:`start` connects. *keys* and the history settings must
    match those of every publisher of the installation. *backoff* paces reconnects;
    *observer* hears about liveness and reconnects (metrics). The lifecycle, publish and
    history live in :class:`herald_contract.recovering_bus.RecoveringBus`.
    """

    _logger: ClassVar[logging.Logger] = logger
    _name: ClassVar[str] = "Redis"
    _unreachable: ClassVar[str] = "Redis"
    _lost_errors: ClassVar[tuple[type[BaseException], ...]] = LOST_ERRORS
    _lose_action: ClassVar[str] = "lose the connection of"
    _lost_why: ClassVar[str] = "the Redis connection was lost"
    _reconnect_what: ClassVar[str] = "Redis bus reconnect"
    _restored_log: ClassVar[str] = "Redis bus restored after %d attempt(s)"
    _reader_name: ClassVar[str] = "herald-redis-bus-reader"
    _reader_died_log: ClassVar[str] = "Redis bus reader died"

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
        self._url = redis_url
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

    # -- connecting ------------------------------------------------------------------------

    def _open(self) -> None:
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

    async def _connect(self) -> None:
        """Connect the pub/sub connection (the command client connects on first use)."""
        assert self._pubsub is not None
        await self._pubsub.connect()

    def _pubsub_connections(self) -> int:
        return 1 if self._lifecycle.live else 0

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

    async def _restore_once(self) -> None:
        """One reconnect attempt: connect, resubscribe, check commands; raises LOST_ERRORS."""
        assert self._pubsub is not None
        await self._pubsub.connect()
        try:
            await self._pubsub.resubscribe()
            await self._check_commands()
        except LOST_ERRORS:
            await self._pubsub.drop(self._lost_why)
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


def loss_reason(exc: BaseException) -> str:
    """The :data:`herald_contract.bus.RECOVERY_REASONS` entry for a reader's *exc*."""
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return "ping_timeout"
    return "connection_lost"
