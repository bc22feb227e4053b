"""Fixtures of the contract's tests: a real Redis Cluster, paid for once per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_cluster import RedisClusterTestbed


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterTestbed]:
    """A 3-primary Redis Cluster shared by the tests of one module; killed at its end.

    Tests that use it start from an empty cluster by calling ``flushall()`` themselves.
    """
    cluster = RedisClusterTestbed.launch(tmp_path_factory.mktemp("cluster"), primaries=3)
    try:
        yield cluster
    finally:
        cluster.close()
