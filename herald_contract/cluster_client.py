"""The command client of a Redis Cluster, and the publish scripts on whichever client a URL names.

:func:`cluster_command_client` is the cluster's counterpart of
:func:`herald_contract.redis_scripts.command_client`; :func:`publish_scripts_for` gives a
publisher the scripts on the right client for its URL: on a ``redis+cluster://`` URL the
publish script ends in SPUBLISH, which is what the cluster bus's SSUBSCRIBE connections hear.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import PRIMARY
from redis.exceptions import ConnectionError as RedisConnectionError

from herald_contract.cluster_urls import is_cluster_url, parse_cluster_url
from herald_contract.history import HistorySettings
from herald_contract.keys import KeyLayout
from herald_contract.redis_pools import NO_CLIENT_SETINFO
from herald_contract.redis_scripts import PublishScripts, command_client


class GuardedConnection(Connection):
    """redis-py's connection, failing with a connection error when closed under a command.

    While a shard fails over, redis-py 8.1's cluster client closes a node's connections from
    one task while another is between connecting and writing on one of them; the writer
    then finds no stream and fails with an AttributeError on None, which no caller expects.
    The command was not sent: it is the connection error it is reported as here (and a
    publish then fails with PublishFailed, to be retried with its event id).
    """

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        if self._writer is None:
            raise RedisConnectionError("the connection was closed before the command was sent")
        await super()._send_packed_command(command)


class _FollowingCluster(RedisCluster):
    """redis-py's cluster client, able to follow an ASK to a node its slot map lacks yet.

    While a slot migrates to a node added a moment ago (a reshard onto a new primary), the
    old owner answers ASK naming that node; redis-py 8.1 looks it up in its node cache, finds
    nothing and fails with an AttributeError on None instead of following. Such a node is
    added to the cache here as a primary (the next slot map read keeps or drops it).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Every node the slot map brings in gets connections of this class.
        self.nodes_manager.connection_kwargs["connection_class"] = GuardedConnection

    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> ClusterNode | None:
        node = super().get_node(host, port, node_name)
        if node is None and node_name:
            address, _, number = node_name.rpartition(":")
            manager = self.nodes_manager
            node = ClusterNode(address, int(number), PRIMARY, **manager.connection_kwargs)
            manager.nodes_cache[node.name] = node
        return node


def cluster_command_client(
    redis_url: str, *, socket_timeout_s: float, max_connections: int = 256
) -> RedisCluster:
    """A cluster client for the scripts: no retry of a failed command, no decoding.

    As :func:`herald_contract.redis_scripts.command_client`: a retried publish could publish
    twice, so connection errors go to the caller. MOVED and ASK replies are still followed
    (redis-py does it below its retries; they mean the command did not run).
    *max_connections* is per node. Does no I/O: the slot map is read on first use.
    """
    url = parse_cluster_url(redis_url)
    return _FollowingCluster(
        startup_nodes=[
            ClusterNode(host, port, connection_class=GuardedConnection) for host, port in url.nodes
        ],
        username=url.username,
        password=url.password,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        max_connections=max_connections,
        **NO_CLIENT_SETINFO,
    )


def any_command_client(redis_url: str, *, socket_timeout_s: float) -> Redis | RedisCluster:
    """The command client *redis_url* names: a cluster client for ``redis+cluster://``, else
    :func:`herald_contract.redis_scripts.command_client` (plain or Sentinel)."""
    if is_cluster_url(redis_url):
        return cluster_command_client(redis_url, socket_timeout_s=socket_timeout_s)
    return command_client(redis_url, socket_timeout_s=socket_timeout_s)


def publish_scripts_for(
    redis_url: str, *, keys: KeyLayout, settings: HistorySettings, socket_timeout_s: float
) -> tuple[Redis | RedisCluster, PublishScripts]:
    """The command client *redis_url* names and the publish scripts on it (caller closes it)."""
    client = any_command_client(redis_url, socket_timeout_s=socket_timeout_s)
    return client, PublishScripts(client, keys, settings, sharded=is_cluster_url(redis_url))
