"""socketsrv/buses.py: the bus a worker is built with follows ``redis_url``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from herald_contract.memory_bus import MemoryBus
from herald_contract.redis_bus import RedisBus
from herald_contract.redis_cluster_bus import RedisClusterBus
from socketsrv.buses import build_bus
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
