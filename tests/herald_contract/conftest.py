"""Fixtures of the contract's tests: real Redis Clusters, paid for once per test module."""

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


@pytest.fixture(scope="module")
def replicated_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterTestbed]:
    """3 primaries with one replica each, shared by the tests of one module; killed at its end.

    A test that kills, adds or removes a node puts the cluster back in that shape before it
    ends (``replace_dead_nodes``, ``remove_node``); tests call ``flushall()`` themselves.
    """
    cluster = RedisClusterTestbed.launch(
        tmp_path_factory.mktemp("replicated"), primaries=3, replicas=1
    )
    try:
        yield cluster
    finally:
        cluster.close()
