"""Build a worker from settings: the one place that picks the bus implementation."""

from __future__ import annotations

from dataclasses import dataclass

from herald_contract.bus import Bus
from herald_contract.cluster_urls import is_cluster_url
from herald_contract.keys import KeyLayout
from herald_contract.memory_bus import MemoryBus
from socketsrv.metrics import Metrics
from socketsrv.settings import Settings


@dataclass(frozen=True, slots=True)
class BusMetrics:
    """The Redis bus's :class:`herald_contract.bus.BusObserver`, on the fleet's metrics."""

    metrics: Metrics

    def live_changed(self, live: bool) -> None:
        self.metrics.bus_live.set(1 if live else 0)

    def reconnected(self) -> None:
        self.metrics.bus_reconnects.inc()


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
        observer=BusMetrics(metrics),
    )
