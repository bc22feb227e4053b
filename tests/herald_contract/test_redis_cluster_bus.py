"""The Redis Cluster bus (herald_contract/redis_cluster_bus.py) against a real 3-primary cluster.

What every bus promises is in test_bus_contract.py; this module shows what only the cluster
shows: where a channel's keys land and that the bus follows the cluster.
"""

from __future__ import annotations

import pytest
from redis.cluster import key_slot

from tests.herald_contract.bus_support import KEYS
from tests.support.redis_cluster import RedisClusterTestbed

pytestmark = pytest.mark.redis

CHANNELS = [f"question:{n}" for n in range(50)] + ["questions:new", "inbox:user:7"]


def test_every_key_of_a_channel_lands_in_one_slot() -> None:
    for channel in CHANNELS:
        names = [
            KEYS.history(channel),
            KEYS.meta(channel),
            KEYS.event_prefix(channel) + "event-1",
            KEYS.live(channel),
        ]
        assert len({key_slot(name.encode()) for name in names}) == 1, channel


def test_the_test_cluster_shares_its_slots_among_three_primaries(
    redis_cluster: RedisClusterTestbed,
) -> None:
    owners = {redis_cluster.node_of_slot(key_slot(KEYS.meta(c).encode())).port for c in CHANNELS}
    assert len(owners) == 3
    client = redis_cluster.client()
    client.set(KEYS.meta(CHANNELS[0]), b"x")
    assert client.get(KEYS.meta(CHANNELS[0])) == b"x"
    redis_cluster.flushall()
    assert client.get(KEYS.meta(CHANNELS[0])) is None
