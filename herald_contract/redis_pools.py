"""Connection pools for a Redis URL, plain or Sentinel-managed (:mod:`herald_contract.redis_urls`).

:func:`connection_pool` is the one place a URL becomes a redis-py pool, for the command
client (:func:`herald_contract.redis_scripts.command_client`) and the pub/sub connection
(:mod:`herald_contract.redis_pubsub`). For a ``redis+sentinel://`` URL the pool is redis-py's
``SentinelConnectionPool`` (what ``Sentinel.master_for`` builds): each new connection asks
the sentinels for the current primary and goes there, and a connection that meets a demoted
primary (a READONLY reply) is dropped. A failover is then followed the way a Redis restart
is: the connection in use breaks (Sentinel kills the clients of a demoted primary), the next
one goes to the new primary.

The pool owns its :class:`redis.asyncio.sentinel.Sentinel` and closes it with itself.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from herald_contract.redis_urls import is_sentinel_url, parse_sentinel_url


class _SentinelPool(SentinelConnectionPool):
    """Connections to the service's current primary; closing it closes the sentinel clients."""

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


class _BlockingSentinelPool(_SentinelPool, BlockingConnectionPool):
    """:class:`_SentinelPool` that waits for a free connection, like BlockingConnectionPool."""


def connection_pool(
    redis_url: str, *, blocking: bool, socket_timeout_s: float, **kwargs: Any
) -> ConnectionPool:
    """A pool of connections to the Redis *redis_url* names, or to its current primary.

    *kwargs* go to every connection (and to a blocking pool: ``max_connections``,
    ``timeout``). Talking to the sentinels is bounded by *socket_timeout_s*, also when the
    connections themselves have no socket timeout (the pub/sub reader's).
    """
    if not is_sentinel_url(redis_url):
        pool_class = BlockingConnectionPool if blocking else ConnectionPool
        return pool_class.from_url(redis_url, **kwargs)
    url = parse_sentinel_url(redis_url)
    # redis-py leaves the Sentinel classes unannotated.
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(url.sentinels),
        sentinel_kwargs={
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": socket_timeout_s,
        },
    )
    auth = {"username": url.username, "password": url.password}
    sentinel_pool_class = _BlockingSentinelPool if blocking else _SentinelPool
    pool: ConnectionPool = sentinel_pool_class(  # type: ignore[no-untyped-call]
        url.service_name, sentinel, is_master=True, db=url.db, **auth, **kwargs
    )
    return pool
