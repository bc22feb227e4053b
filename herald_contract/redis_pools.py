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

**Stale connections.** redis-py checks a pooled connection for an EOF before lending it, but
sees one only if the event loop has already read it: a connection to a primary that was
SIGKILLed (or a host that vanished without a FIN) looks healthy, takes the next command and
fails it. Retrying that command is unsafe (it may have run). So when the connection
arguments include ``health_check_interval``, the pool PINGs a connection idle for longer
than that before lending it and, when the PING fails, connects afresh (for a Sentinel URL:
to the primary the sentinels report now). The command itself is then sent once, on a
connection that just answered. A failover takes longer than Sentinel's
``down-after-milliseconds`` (30 s by default), so an interval below it checks every
connection that could still point at the old primary.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from herald_contract.redis_urls import is_sentinel_url, parse_sentinel_url

IDLE_CHECK_S = 0.5
"""The ``health_check_interval`` command clients use (see the module docstring): well below
any Sentinel ``down-after-milliseconds`` (tests run 1 s; 30 s by default), and a PING costs a
busy client nothing, since its connections are never idle that long."""


NO_CLIENT_SETINFO: dict[str, Any] = {"driver_info": None}
"""Connection arguments that keep redis-py from sending ``CLIENT SETINFO`` on connect.

Redis before 7.2 (7.0 is what this deployment runs) answers it with an error, which redis-py
reads and ignores, at the cost of two round trips per new connection. Under a reconnect
storm of 100,000 those error replies were seen as the replies of history reads
("unknown subcommand 'SETINFO'", bench/results/REPORT.md, sixth session): some path left
them unread on a pooled connection. Without the command there is nothing to leave unread.
"""


class _CheckedPool(ConnectionPool):
    """Lends a connection idle for longer than its ``health_check_interval`` only once it
    answered a PING; one that does not is replaced by a new connection (module docstring)."""

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await super().ensure_connection(connection)
        interval_s = connection.health_check_interval
        if not interval_s or asyncio.get_running_loop().time() <= connection.next_health_check:
            return
        try:
            # read_response() moves next_health_check on, so the connection's own check
            # (send_packed_command -> check_health, no retry) passes without a second PING.
            await connection.send_command("PING", check_health=False)
            await connection.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            # The PING went to a dead server; the caller's command was not sent yet.
            await connection.disconnect()
            await connection.connect()  # type: ignore[no-untyped-call]


class _CheckedBlockingPool(_CheckedPool, BlockingConnectionPool):
    """:class:`_CheckedPool` that waits for a free connection, like BlockingConnectionPool."""


class _SentinelPool(_CheckedPool, SentinelConnectionPool):
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
    ``timeout``). No connection sends ``CLIENT SETINFO`` (:data:`NO_CLIENT_SETINFO`).
    Finding the primary and connecting to it fits in *socket_timeout_s*, also
    when the connections themselves have no socket timeout (the pub/sub reader's): the
    sentinels are asked one after the other, so each gets a share of it, and one that hangs
    (a blackholed host) leaves time to ask the next.
    """
    kwargs = {**NO_CLIENT_SETINFO, **kwargs}
    if not is_sentinel_url(redis_url):
        pool_class = _CheckedBlockingPool if blocking else _CheckedPool
        return pool_class.from_url(redis_url, **kwargs)
    url = parse_sentinel_url(redis_url)
    # One share per sentinel and one for connecting to the primary; no retries, which would
    # spend a silent sentinel's share several times over (redis-py retries by default).
    share_s = socket_timeout_s / (len(url.sentinels) + 1)
    ask = {
        "socket_timeout": share_s,
        "socket_connect_timeout": share_s,
        "retry": Retry(NoBackoff(), 0),
    }
    # redis-py leaves the Sentinel classes unannotated.
    sentinel = Sentinel(list(url.sentinels), sentinel_kwargs=ask)  # type: ignore[no-untyped-call]
    auth = {"username": url.username, "password": url.password}
    sentinel_pool_class = _BlockingSentinelPool if blocking else _SentinelPool
    pool: ConnectionPool = sentinel_pool_class(  # type: ignore[no-untyped-call]
        url.service_name, sentinel, is_master=True, db=url.db, **auth, **kwargs
    )
    return pool
