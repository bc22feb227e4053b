"""A loopback TCP proxy in front of a server, for cutting every link to it in a test.

    async with TcpProxy(upstream_port) as proxy:   # listens on a free port
        proxy.url                                  # redis://127.0.0.1:<its port>
        await proxy.cut()                          # every link closed, new ones refused
        await proxy.restore()                      # new links reach the server again

A cut is a network outage as clients see it: their connections end and reconnects fail,
while the server itself keeps running (for Redis: the same process, the same data and
replication id, so no new epoch starts; docs/protocol.md, "After a Redis failover").
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class TcpProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._host = host
        self._server: asyncio.Server | None = None
        self._port = 0
        self._links: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self._port}"

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.cut()

    async def restore(self) -> None:
        """Listen again (on the same port once it has one)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self._host, self._port)
            self._port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and close every link, both sides."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._links.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
