"""Publishing from any Python backend: ``Publisher.publish(channel, data)`` over Redis.

This module owns :class:`Publisher`: the checks a backend's call gets before anything is sent
(the channel grammar and the largest data of the installation's namespace file, JSON-compatible
data, event id), one Redis client per process, and
:class:`herald_contract.errors.PublishFailed` when Redis does not take the publication. Each
publication is made with its channel kind's retention (docs/namespaces.md). Everything else
is the contract's (:mod:`herald_contract`): the publish script
(:mod:`herald_contract.redis_scripts`), the key layout and the history rules, the same ones
the socket fleet's Redis bus uses, so a publication made here is the same in Redis as one
made by the fleet.

    async with Publisher("redis://localhost:6379/0") as publisher:
        result = await publisher.publish("question:42", {"score": 7}, event_id="vote:991")
        result.position.offset   # the publication's number in the channel's epoch
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_contract.cluster_client import publish_scripts_for
from herald_contract.cluster_urls import is_cluster_url
from herald_contract.envelope import pack_data
from herald_contract.errors import BusUnavailable, PublishFailed
from herald_contract.history import HistorySettings, check_event_id
from herald_contract.keys import DEFAULT_PREFIX, KeyLayout
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import default_namespaces
from herald_contract.stream import PublishResult

_LOST = (RedisConnectionError, RedisTimeoutError)
"""The errors of a connection that broke (or a primary demoted: redis-py's Sentinel pool
turns READONLY into a ConnectionError), as opposed to a command Redis refused."""


class Publisher:
    """Publishes to Herald channels through Redis; one per process, shared by its tasks.

    Construction does no I/O: the first :meth:`publish` connects. Close it with
    :meth:`close` or ``async with``. Settings must match the socket fleet's (the same
    *prefix*, history settings and *namespaces*), since both write the same keys.
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
        max_data_bytes: int | None = None,
        namespaces: Namespaces | None = None,
        socket_timeout_s: float = 5.0,
        durable_replicas: int = 0,
        durable_timeout_s: float = 1.0,
    ) -> None:
        """*durable_replicas* above 0 makes every publish durable (see :meth:`publish`): it
        returns once that many replicas acknowledged the write, waiting at most
        *durable_timeout_s* (which must be shorter than *socket_timeout_s*). Not available on a
        ``redis+cluster://`` URL.

        *namespaces* is the installation's namespace file
        (:func:`herald_contract.namespaces_file.load_namespaces`; None: the shipped one): the
        channel grammar, each kind's retention (*history_size* and *history_ttl_s* for a kind
        that sets none) and largest data. *max_data_bytes*, when given, is the largest data of
        every channel instead.
        """
        if durable_replicas < 0:
            raise ValueError(f"durable_replicas must be at least 0, not {durable_replicas}")
        if durable_replicas and not 0 < durable_timeout_s < socket_timeout_s:
            raise ValueError(
                "durable_timeout_s must be above 0 and below socket_timeout_s"
                f" ({socket_timeout_s}), not {durable_timeout_s}"
            )
        if durable_replicas and is_cluster_url(redis_url):
            raise ValueError("durable_replicas is not available on a redis+cluster:// URL")
        self._durable_replicas = durable_replicas
        self._durable_timeout_ms = max(1, round(durable_timeout_s * 1000))
        self._namespaces = namespaces or default_namespaces()
        settings = HistorySettings(
            history_size,
            history_ttl_s,
            meta_ttl_s,
            idempotency_ttl_s,
            self._namespaces.retention(),
        )
        self._max_data_bytes = max_data_bytes
        # A redis+cluster:// URL gives a cluster client whose script ends in SPUBLISH.
        self._client, self._scripts = publish_scripts_for(
            redis_url, keys=KeyLayout(prefix), settings=settings, socket_timeout_s=socket_timeout_s
        )

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> PublishResult:
        """Publish *data* (any JSON-compatible value) to *channel*.

        The publication gets the channel's next offset, enters its history and reaches every
        subscriber, atomically. With an *event_id*, a repeat within ``idempotency_ttl_s`` in the
        same epoch publishes nothing and returns the first position (``duplicate=True``): pass
        one when retrying after :class:`PublishFailed`. (After a Redis failover the channel is
        in a new epoch and a repeat is published again: docs/protocol.md.) A publish with an
        *event_id* that meets a lost connection (a primary that died after the connection's
        last check) is retried once here (a repeat is harmless), and may then return
        ``duplicate=True`` for a publication the first attempt made; one without an event id
        is never retried.

        A durable publisher (``durable_replicas=N``) then runs Redis ``WAIT N`` on the connection
        that wrote and raises :class:`PublishFailed` naming the shortfall when fewer than N
        replicas acknowledged within ``durable_timeout_s``: the publication *was* made on the
        primary (and may have been delivered) but may be lost if it fails over; retry with the
        same *event_id*. A duplicate is waited for like a new publication.

        Raises :class:`InvalidChannel`, :class:`InvalidPayload` (data or event id) or
        :class:`PublishFailed` (Redis unreachable or refusing; the publication may or may not
        have been made).
        """
        packed = self.check(channel, data, event_id=event_id)
        return await self.publish_packed(channel, packed, event_id=event_id)

    def check(self, channel: str, data: Any, *, event_id: str = "") -> bytes:
        """What :meth:`publish` checks before it sends anything: *data* packed, or
        :class:`InvalidChannel` / :class:`InvalidPayload` (:func:`check_publication`).

        With :meth:`publish_packed`, a caller checks many publications before it publishes
        any of them (the HTTP publish API's batches).
        """
        return check_publication(
            self._namespaces, channel, data, event_id=event_id, max_data_bytes=self._max_data_bytes
        )

    async def publish_packed(
        self, channel: str, packed: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """:meth:`publish` of data that :meth:`check` packed (same retry and durability)."""
        try:
            try:
                result, acknowledged = await self._publish_once(channel, packed, event_id)
            except BusUnavailable as exc:
                if not (event_id and _connection_lost(exc)):
                    raise
                # With an event id a second attempt publishes nothing more; without one it
                # could publish twice (the first may have run and only its reply been lost).
                result, acknowledged = await self._publish_once(channel, packed, event_id)
        except BusUnavailable as exc:
            raise PublishFailed(channel, exc.why) from exc
        if acknowledged < self._durable_replicas:
            raise PublishFailed(
                channel,
                f"only {acknowledged} of {self._durable_replicas} replicas acknowledged offset"
                f" {result.position.offset} within {self._durable_timeout_ms} ms; it was"
                " published on the primary but may be lost on a failover: retry with the"
                " same event id",
            )
        return result

    async def _publish_once(
        self, channel: str, packed: bytes, event_id: str
    ) -> tuple[PublishResult, int]:
        """One publish script run (and ``WAIT`` when durable); the replicas that acknowledged."""
        if not self._durable_replicas:
            return await self._scripts.publish(channel, packed, event_id=event_id), 0
        return await self._scripts.publish_and_wait(
            channel,
            packed,
            event_id=event_id,
            replicas=self._durable_replicas,
            timeout_ms=self._durable_timeout_ms,
        )

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


def check_publication(
    namespaces: Namespaces,
    channel: str,
    data: Any,
    *,
    event_id: str = "",
    max_data_bytes: int | None = None,
) -> bytes:
    """*data* packed for *channel*, after every check a publication gets before it is sent:
    the channel grammar of *namespaces*, its kind's largest data (or *max_data_bytes*), JSON
    compatibility, the event id. Raises :class:`InvalidChannel` or :class:`InvalidPayload`.

    The one place these rules are applied, whether the publication then goes through
    :class:`Publisher` or straight onto a bus (the HTTP publish API on the in-process bus).
    """
    namespace = namespaces.parse(channel).namespace
    packed = pack_data(data, max_bytes=max_data_bytes or namespace.max_data_bytes)
    check_event_id(event_id)
    return packed


def _connection_lost(exc: BusUnavailable) -> bool:
    """Whether *exc* came from a lost connection, after which a publish may or may not have run."""
    return isinstance(exc.__cause__, _LOST)
