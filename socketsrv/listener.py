"""The worker's listening sockets: every connection waiting in the listen queue is accepted
as soon as the loop sees the socket readable, not one a turn.

uvloop's own server (``loop.create_server``) accepts one connection per turn of the event
loop (measured: 100 connections in one second of 10 ms turns, where asyncio's accepts all
500 waiting). A worker answering a reconnect storm turns its loop tens of times a second, so
it drained its listen queue at tens of connections a second. The queue (4,096) filled with
connections whose clients gave up (client-js's connect timeout is 10 s) before the worker
reached them, and every new connection the kernel handed that worker (SO_REUSEPORT spreads
them by address and port) waited behind them and was given up too: in the storm of 100,000
two to four of six workers ended refusing everyone that way (bench/results/REPORT.md,
2026-12-06, fifth session).

So the worker makes its listening sockets itself and, each time one is readable, accepts up
to :data:`ACCEPTS_PER_TURN` connections, handing each to the event loop's own transport
(``loop.connect_accepted_socket``). Accept errors (out of descriptors) are reported as
asyncio reports them (socketsrv.host.AcceptErrorLog counts them), and accepting pauses for
:data:`RETRY_AFTER_ERROR_S` so that a full descriptor table is not polled in a busy loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Callable

from socketsrv.host import ACCEPT_ERRNOS

log = logging.getLogger(__name__)

ACCEPTS_PER_TURN = 512
"""The most connections accepted from one socket per readiness (then the loop goes on)."""
RETRY_AFTER_ERROR_S = 1.0
"""How long accepting pauses after running out of descriptors (asyncio's delay)."""


class Listener:
    """Listening sockets whose connections go to *factory*'s protocols (see the module
    docstring). Build with :meth:`open`; :meth:`close` stops accepting."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
        sockets: list[socket.socket],
    ) -> None:
        self.sockets = sockets
        self._loop = loop
        self._factory = factory
        self._opening: set[asyncio.Task[tuple[asyncio.Transport, asyncio.Protocol]]] = set()
        self._closed = False
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    @classmethod
    async def open(
        cls,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.Protocol],
        host: str,
        port: int,
        *,
        reuse_port: bool,
        backlog: int,
    ) -> Listener:
        """Listen on every address *host* resolves to (as ``loop.create_server`` does)."""
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # Accepted connections inherit TCP_NODELAY (Linux): no call per connection.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return cls(loop, factory, sockets)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (open connections stay)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                self._loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": exc,
                        "socket": listening,
                    }
                )
                if exc.errno in ACCEPT_ERRNOS and not self._closed:
                    self._loop.remove_reader(listening.fileno())
                    self._loop.call_later(RETRY_AFTER_ERROR_S, self._resume, listening)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
            self._opening.add(task)
            task.add_done_callback(functools.partial(self._opened, conn))

    def _resume(self, listening: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def _opened(
        self, conn: socket.socket, task: asyncio.Task[tuple[asyncio.Transport, asyncio.Protocol]]
    ) -> None:
        self._opening.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        # The transport could not be made (the client reset it meanwhile): nothing to serve.
        log.debug("an accepted connection could not be opened: %s", task.exception())
        conn.close()
