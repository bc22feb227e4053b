"""The Redis Cluster URL form Herald reads, parsed into its parts (no I/O, no Redis client).

    redis+cluster://[[username]:password@]host1:port1[,host2:port2...][/]

names a Redis Cluster by one or more of its nodes (6379 when a port is left out); the rest of
the cluster is discovered from them (``CLUSTER SLOTS``). A cluster has one database, so the URL
has no database number. The fleet's bus then publishes with ``SPUBLISH`` on each channel's
shard and subscribes with ``SSUBSCRIBE`` (:mod:`herald_contract.redis_cluster_bus`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald_contract.url_parts import split_userinfo

CLUSTER_SCHEME = "redis+cluster"
CLUSTER_DEFAULT_PORT = 6379


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A parsed ``redis+cluster://`` URL (see the module docstring)."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_cluster_url(url: str) -> bool:
    """Whether *url* names a Redis Cluster (the ``redis+cluster`` scheme)."""
    return url.partition("://")[0].lower() == CLUSTER_SCHEME


def parse_cluster_url(url: str) -> ClusterUrl:
    """*url*'s parts; ValueError (one line, no password in it) when it is malformed."""
    scheme, _, rest = url.partition("://")
    where = _redacted(url)
    if scheme.lower() != CLUSTER_SCHEME:
        raise ValueError(f"{where!r} is not a {CLUSTER_SCHEME}:// URL")
    rest = rest.partition("?")[0].partition("#")[0]
    netloc, _, path = rest.partition("/")
    if path:
        raise ValueError(f"{where!r}: a cluster has one database, so its URL has no path")
    hosts, username, password = split_userinfo(netloc)
    nodes = tuple(_address(part, where) for part in hosts.split(","))
    return ClusterUrl(nodes, username, password)


def _address(part: str, where: str) -> tuple[str, int]:
    host, colon, port = part.strip().rpartition(":")
    if not colon:
        host, port = port, str(CLUSTER_DEFAULT_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{where!r}: {part!r} is not a host:port of a cluster node")
    return host, int(port)


def _redacted(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"
