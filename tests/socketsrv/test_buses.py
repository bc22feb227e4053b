"""socketsrv/buses.py: the bus a worker is built with follows ``redis_url``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from herald_contract.bus import RECOVERY_REASONS, ShardObserver
from herald_contract.memory_bus import MemoryBus
from herald_contract.redis_bus import RedisBus
from herald_contract.redis_cluster_bus import RedisClusterBus
from socketsrv.buses import BusMetrics, build_bus
from socketsrv.metrics import build_metrics
from socketsrv.settings import Settings


def test_the_url_scheme_picks_the_bus_without_connecting() -> None:
    metrics = build_metrics(CollectorRegistry())
    assert isinstance(build_bus(Settings(redis_url=None), metrics), MemoryBus)
    plain = build_bus(Settings(redis_url="redis://127.0.0.1:7000/0"), metrics)
    assert isinstance(plain, RedisBus)
    cluster = build_bus(
        Settings(redis_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001"), metrics
    )
    assert isinstance(cluster, RedisClusterBus)


def test_bus_metrics_is_a_shard_observer_and_counts_recoveries_by_reason() -> None:
    metrics = build_metrics(CollectorRegistry())
    observer = BusMetrics(metrics)
    assert isinstance(observer, ShardObserver)
    sample = metrics.registry.get_sample_value
    for reason in RECOVERY_REASONS:  # exported at 0 before the first recovery
        assert sample("herald_bus_recoveries_total", {"reason": reason}) == 0.0
    observer.shard_connections(3)
    observer.recovered("sunsubscribe", 7, 0.4)
    observer.recovered("connection_lost", 5, 2.0)
    observer.recovered("something new", 0, 0.0)  # outside the closed set: reader_error
    assert sample("herald_bus_shard_connections") == 3.0
    assert sample("herald_bus_recoveries_total", {"reason": "sunsubscribe"}) == 1.0
    assert sample("herald_bus_recoveries_total", {"reason": "connection_lost"}) == 1.0
    assert sample("herald_bus_recoveries_total", {"reason": "reader_error"}) == 1.0
    assert sample("herald_bus_channels_resubscribed_total") == 12.0
    assert sample("herald_bus_slot_moves_total") == 1.0
    assert sample("herald_bus_recovery_seconds_count") == 3.0
    assert sample("herald_bus_recovery_seconds_bucket", {"le": "0.5"}) == 2.0
