"""The shipped topology passes the client's address to the fleet (issue 11, item 6): HAProxy
sends a PROXY protocol v2 header on every connection to a host (``send-proxy-v2``) and on
its health checks (``check-send-proxy``), and the hosts run with ``HERALD_PROXY_PROTOCOL=1``,
so a worker's per-address limits count the client, never the balancer.

Clients bind their own loopback source address (127.0.0.5, 127.0.0.6): with
``address_limit_exempt`` emptied and one connection per address, the second websocket from
one address is refused with 429 while another address is still let in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch.hosts import Topology, proxied_http_get
from tests.support.haproxy import running_topology
from tests.support.raw_ws import HttpAnswer, get_request, parse_http_answer, upgrade_request
from tests.support.redis_server import RedisServer

ONE_PER_ADDRESS = {
    "HERALD_MAX_CONNECTIONS_PER_ADDRESS": "1",
    # A lone comma is the empty list (an empty variable counts as unset): loopback counts.
    "HERALD_ADDRESS_LIMIT_EXEMPT": ",",
}


@contextlib.asynccontextmanager
async def connection_from(
    source: str, address: str, port: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A TCP connection to *address*:*port* from the loopback address *source*."""
    reader, writer = await asyncio.open_connection(address, port, local_addr=(source, 0))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> HttpAnswer:
    """Send a websocket opening handshake; the answer's status line and headers."""
    writer.write(upgrade_request())
    await writer.drain()
    return parse_http_answer(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10))


def balancer_of(topology: Topology) -> tuple[str, int]:
    return topology.balancer.address, topology.balancer.port


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_worker_behind_haproxy_counts_the_clients_address_not_the_balancers(
    redis_server: RedisServer, run_dir: Path
) -> None:
    with running_topology(
        hosts=1, workers=1, redis_url=redis_server.url, run_dir=run_dir, **ONE_PER_ADDRESS
    ) as topology:
        lb = balancer_of(topology)
        async with connection_from("127.0.0.5", *lb) as first:
            assert (await handshake(*first)).status == 101
            async with connection_from("127.0.0.5", *lb) as second:
                refused = await handshake(*second)
                assert refused.status == 429, refused
            async with connection_from("127.0.0.6", *lb) as other:
                assert (await handshake(*other)).status == 101
        # HAProxy's own checks (a LOCAL header, no client) kept the host in rotation.
        assert topology.lb.status("h1") == "UP"


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_host_behind_haproxy_drops_a_connection_without_a_proxy_header(
    redis_server: RedisServer, run_dir: Path
) -> None:
    with running_topology(
        hosts=1, workers=1, redis_url=redis_server.url, run_dir=run_dir
    ) as topology:
        host = topology.hosts[0].spec
        async with connection_from("127.0.0.5", host.address, host.port) as (reader, writer):
            writer.write(get_request("/readyz"))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""
        # With a PROXY header first (as the balancer's checks send), the host answers.
        status = await asyncio.to_thread(proxied_http_get, host.address, host.port, "/readyz")
        assert status == 200
