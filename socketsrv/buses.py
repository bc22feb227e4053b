"""Build a worker from settings: the one place that picks the bus implementation."""

from __future__ import annotations

from dataclasses import dataclass

from herald_contract.bus import RECOVERY_REASONS, Bus
from herald_contract.cluster_urls import is_cluster_url
from herald_contract.keys import KeyLayout
from herald_contract.memory_bus import MemoryBus
from socketsrv.metrics import Metrics
from socketsrv.settings import Settings

_SLOT_MOVE_REASONS = frozenset({"slot_moved", "sunsubscribe"})


@dataclass(frozen=True, slots=True)
class BusMetrics:
    """The Redis buses' :class:`herald_contract.bus.ShardObserver`, on the fleet's metrics."""

    metrics: Metrics

    def __post_init__(self) -> None:
        # Every reason exported from the start (at 0), so that rate() and alerts see the
        # first recovery as an increase rather than as a new series.
        for reason in RECOVERY_REASONS:
            self.metrics.bus_recoveries.labels(reason=reason)

    def live_changed(self, live: bool) -> None:
        self.metrics.bus_live.set(1 if live else 0)

    def reconnected(self) -> None:
        self.metrics.bus_reconnects.inc()

    def shard_connections(self, count: int) -> None:
        self.metrics.bus_shard_connections.set(count)

    def recovered(self, reason: str, channels: int, seconds: float) -> None:
        known = reason if reason in RECOVERY_REASONS else "reader_error"
        self.metrics.bus_recoveries.labels(reason=known).inc()
        self.metrics.bus_channels_resubscribed.inc(channels)
        if known in _SLOT_MOVE_REASONS:
            self.metrics.bus_slot_moves.inc()
        self.metrics.bus_recovery_duration.observe(seconds)


def build_bus(settings: Settings, metrics: Metrics) -> Bus:
    """The bus ``redis_url`` names: the in-process bus when it is unset (embedded default),
    the Redis Cluster bus (sharded pub/sub) for a ``redis+cluster://`` URL, else the Redis bus.
    """
    if settings.redis_url is None:
        return MemoryBus(
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
            meta_ttl_s=settings.meta_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            kind_retention=settings.namespaces().retention(),
        )
    if is_cluster_url(settings.redis_url):
        from herald_contract.redis_cluster_bus import RedisClusterBus

        return RedisClusterBus(
            settings.redis_url,
            keys=KeyLayout(settings.key_prefix),
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
            meta_ttl_s=settings.meta_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            kind_retention=settings.namespaces().retention(),
            observer=BusMetrics(metrics),
        )
    from herald_contract.redis_bus import RedisBus

    return RedisBus(
        settings.redis_url,
        keys=KeyLayout(settings.key_prefix),
        history_size=settings.history_size,
        history_ttl_s=settings.history_ttl_s,
        meta_ttl_s=settings.meta_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        kind_retention=settings.namespaces().retention(),
        observer=BusMetrics(metrics),
    )
