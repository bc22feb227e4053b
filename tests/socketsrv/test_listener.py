"""socketsrv/listener.py: a worker accepts every connection waiting in its listen queue when
the socket is readable, not one per loop turn as uvloop's own server does; it stops when
closed. Under uvloop, the workers' event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import uvloop

from socketsrv.listener import Listener

WAITING = 300


class Counted(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counted.made += 1


def connect_many(port: int, count: int) -> list[socket.socket]:
    """Connections the kernel completes into the listen queue before the loop looks."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def made_in_five_turns(sockets: list[socket.socket], close: Callable[[], None]) -> int:
    """Connections made within five loop turns of WAITING waiting on the first of *sockets*."""
    Counted.made = 0
    port = sockets[0].getsockname()[1]
    clients = connect_many(port, WAITING)  # blocks the loop: all wait in the queue
    try:
        await turns(5)
        return Counted.made
    finally:
        close()
        for client in clients:
            client.close()


def test_every_waiting_connection_is_accepted_within_a_few_loop_turns() -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        listener = await Listener.open(
            loop, Counted, "127.0.0.1", 0, reuse_port=False, backlog=4096
        )
        with_listener = await made_in_five_turns(listener.sockets, listener.close)
        server = await loop.create_server(Counted, "127.0.0.1", 0, backlog=4096)
        with_uvloop_server = await made_in_five_turns(list(server.sockets), server.close)
        return with_listener, with_uvloop_server

    with_listener, with_uvloop_server = uvloop.run(scenario())
    assert with_listener == WAITING
    assert with_uvloop_server < WAITING / 2  # why the listener exists: about one a turn


def test_a_closed_listener_accepts_no_more() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener = await Listener.open(loop, Counted, "127.0.0.1", 0, reuse_port=False, backlog=16)
        port = listener.sockets[0].getsockname()[1]
        listener.close()
        listener.close()  # twice is fine
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)

    uvloop.run(scenario())
