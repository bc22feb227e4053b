"""Connections and subscriptions per client address, and the channels of a worker (issue 11,
item 6; docs/protocol.md#limits).

Before, one address could take every connection slot of a worker (the next client got 503),
and any number of channels. Now: past ``max_connections_per_address`` the upgrade gets 429,
past ``max_subscriptions_per_address`` a subscribe gets error 430, past ``max_channels`` a
subscribe to one more channel gets error 503; each refusal is counted. The address is the TCP
peer's, or the one a PROXY header (v1, v2) names, or a trusted proxy's X-Forwarded-For, never
a header from anyone else.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from socketsrv.proxy_protocol import V2_SIGNATURE, ProxyHeaderError, parse_proxy_header
from socketsrv.worker import Worker
from tests.support.raw_ws import (
    OP_TEXT,
    RawConnection,
    client_frame,
    raw_connection,
    upgrade_request,
)
from tests.support.worker import ManualClock, handshake_rejections, metric, running_worker

QUIET: dict[str, Any] = {
    "ping_interval_s": 3600.0,  # few heartbeat frames among the replies read below
    "address_limit_exempt": (),  # loopback (every client here) is exempt by default
}


def upgrade(*headers: str) -> bytes:
    request = upgrade_request()
    extra = "".join(f"{h}\r\n" for h in headers).encode()
    return request[:-2] + extra + b"\r\n"


def proxy_v1(address: str) -> bytes:
    return f"PROXY TCP4 {address} 127.0.0.1 40000 8000\r\n".encode()


def proxy_v2(address: str, *, local: bool = False) -> bytes:
    addresses = socket.inet_aton(address) + socket.inet_aton("127.0.0.1") + b"\x9c\x40\x1f\x40"
    command = 0x20 if local else 0x21
    return V2_SIGNATURE + bytes([command, 0x11]) + len(addresses).to_bytes(2, "big") + addresses


async def opened(stack: AsyncExitStack, worker: Worker, prefix: bytes = b"", *headers: str) -> int:
    """Open one connection (kept open by *stack*) and send the upgrade; its HTTP status."""
    conn = await stack.enter_async_context(raw_connection(worker.port))
    answer = await conn.read_http_head(prefix + upgrade(*headers))
    return answer.status


async def command(conn: RawConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send *message*; the next frame that is not a heartbeat (the sweep sends a connection
    its first one at its first visit, whatever ping_interval_s: once one came between)."""
    await conn.send(client_frame(OP_TEXT, json.dumps(message).encode()))
    while True:
        _, payload = await conn.read_frame(30.0)
        reply: dict[str, Any] = json.loads(payload)
        if reply.get("type") != "hb":
            return reply


async def connected(stack: AsyncExitStack, worker: Worker) -> RawConnection:
    conn = await stack.enter_async_context(raw_connection(worker.port))
    await conn.open_websocket()
    assert (await command(conn, {"op": "connect", "id": 1}))["type"] == "reply"
    return conn


async def subscribe(conn: RawConnection, channel: str, request_id: int) -> dict[str, Any]:
    return await command(conn, {"op": "subscribe", "id": request_id, "channel": channel})


@pytest.fixture
async def limited() -> AsyncIterator[Worker]:
    async with running_worker(max_connections_per_address=3, **QUIET) as w:
        yield w


async def test_one_address_gets_429_past_its_connections_and_others_still_get_in(
    limited: Worker,
) -> None:
    async with AsyncExitStack() as stack:
        assert [await opened(stack, limited) for _ in range(3)] == [101, 101, 101]
        async with raw_connection(limited.port) as conn:
            conn.writer.write(upgrade())
            answer = await conn.exchange(b"")
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b"Too many connections from this address." in answer
        assert handshake_rejections(limited, "address") == 1
    # The three closed: the address has its slots back.
    async with AsyncExitStack() as stack:
        for _ in range(3):
            status = await opened(stack, limited)
            assert status == 101


async def test_a_trusted_proxy_names_the_client_in_x_forwarded_for() -> None:
    async with (
        running_worker(
            max_connections_per_address=1, trusted_proxies="127.0.0.1", **QUIET
        ) as worker,
        AsyncExitStack() as stack,
    ):
        # The rightmost entry the proxy appended is the client; what the client wrote to
        # the left of it (a spoofed address) changes nothing.
        assert await opened(stack, worker, b"", "X-Forwarded-For: 198.51.100.1") == 101
        spoofed = "X-Forwarded-For: 10.9.9.9, 198.51.100.1"
        assert await opened(stack, worker, b"", spoofed) == 429
        assert await opened(stack, worker, b"", "X-Forwarded-For: 198.51.100.2") == 101
        assert handshake_rejections(worker, "address") == 1


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    async with (
        running_worker(max_connections_per_address=1, trusted_proxies="10.0.0.1", **QUIET) as w,
        AsyncExitStack() as stack,
    ):
        assert await opened(stack, w, b"", "X-Forwarded-For: 198.51.100.1") == 101
        assert await opened(stack, w, b"", "X-Forwarded-For: 198.51.100.2") == 429


@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
async def test_the_proxy_protocol_header_names_the_client(header: Any) -> None:
    async with (
        running_worker(max_connections_per_address=1, proxy_protocol=True, **QUIET) as w,
        AsyncExitStack() as stack,
    ):
        assert await opened(stack, w, header("203.0.113.7")) == 101
        assert await opened(stack, w, header("203.0.113.7")) == 429
        assert await opened(stack, w, header("203.0.113.8")) == 101
        # A header never overrides what it names with X-Forwarded-For (no trusted proxies).
        assert await opened(stack, w, header("203.0.113.7"), "X-Forwarded-For: 1.2.3.4") == 429


async def test_with_the_proxy_protocol_on_a_connection_without_a_header_is_dropped() -> None:
    async with running_worker(proxy_protocol=True, **QUIET) as w:
        async with raw_connection(w.port) as conn:
            answer = await conn.exchange(upgrade())
        assert answer == b""
        assert handshake_rejections(w, "proxy_header") == 1
        assert not w.connections
        # A LOCAL header (the balancer's health check) keeps the peer's address.
        async with AsyncExitStack() as stack:
            assert await opened(stack, w, proxy_v2("0.0.0.0", local=True)) == 101


def test_the_proxy_header_parser_waits_for_more_and_refuses_junk() -> None:
    whole = proxy_v1("192.0.2.1") + b"GET"
    assert parse_proxy_header(whole) == ("192.0.2.1", len(whole) - 3)
    assert parse_proxy_header(whole[:10]) is None
    assert parse_proxy_header(proxy_v2("192.0.2.1")[:20]) is None
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == (None, 15)
    for junk in (b"GET / HTTP/1.1\r\n", b"PROXY TCP4 nope 1.1.1.1 1 2\r\n", b"PROXY " + b"1" * 200):
        with pytest.raises(ProxyHeaderError):
            parse_proxy_header(junk)


async def test_subscriptions_per_address_over_the_limit_get_430() -> None:
    async with (
        running_worker(max_subscriptions_per_address=3, **QUIET) as w,
        AsyncExitStack() as stack,
    ):
        first, second = await connected(stack, w), await connected(stack, w)
        for i in (1, 2):
            assert (await subscribe(first, f"question:{i}", 10 + i))["type"] == "reply"
        assert (await subscribe(second, "question:3", 13))["type"] == "reply"
        refused = await subscribe(second, "question:4", 14)
        assert (refused["type"], refused["code"]) == ("error", 430), refused
        assert metric(w, "herald_subscriptions_refused_total", reason="address") == 1
        # An unsubscribe gives the address its slot back.
        unsubscribe = {"op": "unsubscribe", "id": 15, "channel": "question:1"}
        assert (await command(first, unsubscribe))["type"] == "reply"
        assert (await subscribe(second, "question:4", 16))["type"] == "reply"


async def test_loopback_is_exempt_from_the_per_address_limits_by_default() -> None:
    async with (
        running_worker(max_connections_per_address=1, ping_interval_s=3600.0) as w,
        AsyncExitStack() as stack,
    ):
        assert [await opened(stack, w) for _ in range(3)] == [101, 101, 101]


async def test_private_networks_are_exempt_by_default_public_addresses_are_not() -> None:
    async with (
        running_worker(
            max_connections_per_address=1, proxy_protocol=True, ping_interval_s=3600.0
        ) as w,
        AsyncExitStack() as stack,
    ):
        # A balancer that passes no client address puts everyone under its own (private) one.
        assert await opened(stack, w, proxy_v1("10.1.2.3")) == 101
        assert await opened(stack, w, proxy_v1("10.1.2.3")) == 101
        assert await opened(stack, w, proxy_v1("203.0.113.9")) == 101
        assert await opened(stack, w, proxy_v1("203.0.113.9")) == 429


async def test_a_worker_holds_at_most_max_channels() -> None:
    async with (
        running_worker(max_channels=3, unsubscribe_grace_s=3600.0, **QUIET) as w,
        AsyncExitStack() as stack,
    ):
        conn, other = await connected(stack, w), await connected(stack, w)
        for i in (1, 2, 3):
            assert (await subscribe(conn, f"tag:t{i}", 10 + i))["type"] == "reply"
        refused = await subscribe(other, "tag:t4", 14)
        assert (refused["type"], refused["code"]) == ("error", 503), refused
        assert metric(w, "herald_subscriptions_refused_total", reason="channels") == 1
        # A channel the worker already holds costs nothing more: still allowed.
        assert (await subscribe(other, "tag:t1", 15))["type"] == "reply"
        assert w.hub.channel_count == 3


async def test_an_address_opening_connections_too_fast_gets_429_with_retry_after() -> None:
    clock = ManualClock()
    async with running_worker(
        clock=clock, address_connections_burst=2, address_connections_per_s=0.5, **QUIET
    ) as w:
        async with AsyncExitStack() as stack:
            assert [await opened(stack, w) for _ in range(2)] == [101, 101]
        # Closing them gives nothing back: the bucket counts connections opened.
        async with raw_connection(w.port) as conn:
            answer = await conn.read_http_head(upgrade())
        assert answer.status == 429
        assert answer.headers["retry-after"] == "2"
        assert handshake_rejections(w, "address_rate") == 1
        clock.advance(2.0)
        async with AsyncExitStack() as stack:
            assert await opened(stack, w) == 101


async def test_reconnecting_does_not_refill_the_command_budget_of_an_address() -> None:
    clock = ManualClock()
    async with running_worker(
        clock=clock, address_commands_burst=4, address_commands_per_s=0.001, **QUIET
    ) as w:
        async with AsyncExitStack() as stack:
            first = await connected(stack, w)
            for request_id in (2, 3, 4):
                assert (await command(first, {"op": "ping", "id": request_id}))["type"] == "reply"
            refused = await command(first, {"op": "ping", "id": 5})
            assert (refused["type"], refused["code"]) == ("error", 429)
        async with AsyncExitStack() as stack:
            again = await stack.enter_async_context(raw_connection(w.port))
            await again.open_websocket()
            refused = await command(again, {"op": "connect", "id": 1})
            assert (refused["type"], refused["code"], refused["id"]) == ("error", 429, 1)


async def test_exempt_addresses_open_connections_at_any_rate() -> None:
    async with (
        running_worker(address_connections_burst=1, ping_interval_s=3600.0) as w,
        AsyncExitStack() as stack,
    ):
        assert [await opened(stack, w) for _ in range(3)] == [101, 101, 101]
