"""A loopback TCP proxy in front of a server, for cutting or filtering links to it in a test.

    async with TcpProxy(upstream_port) as proxy:   # listens on a free port
        proxy.url                                  # redis://127.0.0.1:<its port>
        await proxy.cut()                          # every link closed, new ones refused
        await proxy.restore()                      # new links reach the server again

A cut is a network outage as clients see it: their connections end and reconnects fail,
while the server itself keeps running (for Redis: the same process, the same data and
replication id, so no new epoch starts; docs/protocol.md, "After a Redis failover").

In front of Redis the proxy also understands RESP (2 and 3) in both directions, enough to
hurt pub/sub alone, the way a lossy subscriber link would, while commands pass untouched:

    proxy.drop_messages(lambda channel, payload: ...)  # drop the pub/sub pushes it picks
    proxy.pause_pubsub()          # hold everything Redis sends on pub/sub links ...
    proxy.resume_pubsub()         # ... and forward it, in order, from now on

A link is a pub/sub link once its client sent SUBSCRIBE, SSUBSCRIBE or PSUBSCRIBE. A dropped
push (a ``message`` or ``smessage``) is gone without a trace, as when Redis pub/sub, which
is at most once, loses one: the connection stays up and nothing later refers to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType

MessageFilter = Callable[[bytes, bytes], bool]
"""(pub/sub channel name, payload) of one pushed message -> whether to drop it."""

_PUBSUB_COMMANDS = frozenset({b"SUBSCRIBE", b"SSUBSCRIBE", b"PSUBSCRIBE"})
_MESSAGE_KINDS = frozenset({b"message", b"smessage"})
_LINE_TYPES = frozenset(b"+-:_#,(")
_BULK_TYPES = frozenset(b"$!=")
_AGGREGATE_TYPES = {ord("*"): 1, ord(">"): 1, ord("~"): 1, ord("%"): 2, ord("|"): 2}
"""RESP aggregate type -> items per counted element (a map's element is a key and a value)."""


class NotResp(ValueError):
    """The bytes of a link are not RESP: the link is forwarded without looking any more."""


def frame_end(buf: bytes | bytearray, pos: int = 0) -> int | None:
    """Where the RESP frame starting at *pos* ends; None while it is incomplete."""
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        return None
    kind = buf[pos]
    if kind in _LINE_TYPES:
        return eol + 2
    try:
        count = int(buf[pos + 1 : eol])
    except ValueError as exc:
        raise NotResp(f"bad length in {bytes(buf[pos:eol])!r}") from exc
    if kind in _BULK_TYPES:
        end = eol + 2 + count + 2 if count >= 0 else eol + 2
        return end if len(buf) >= end else None
    per = _AGGREGATE_TYPES.get(kind)
    if per is None:
        raise NotResp(f"unknown RESP type {chr(kind)!r}")
    pos = eol + 2
    for _ in range(max(0, count) * per):
        found = frame_end(buf, pos)
        if found is None:
            return None
        pos = found
    return pos


def _bulks(frame: bytes, limit: int) -> list[bytes]:
    """The first *limit* bulk strings of an aggregate *frame* (fewer if other items come)."""
    eol = frame.find(b"\r\n")
    pos, items = eol + 2, list[bytes]()
    while len(items) < limit and pos < len(frame) and frame[pos] == ord("$"):
        eol = frame.find(b"\r\n", pos)
        size = int(frame[pos + 1 : eol])
        items.append(frame[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2
    return items


def pubsub_message(frame: bytes) -> tuple[bytes, bytes] | None:
    """(channel, payload) of a pushed pub/sub message frame; None for any other frame."""
    if not frame.startswith((b"*3\r\n", b">3\r\n")):
        return None
    items = _bulks(frame, 3)
    if len(items) == 3 and items[0] in _MESSAGE_KINDS:
        return items[1], items[2]
    return None


class Framer:
    """Cuts one direction of a link into RESP frames, keeping a partial frame for later.

    Bytes found not to be RESP make the rest of the direction one opaque stream: each chunk
    is then handed on as it is.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.opaque = False

    def feed(self, data: bytes) -> list[bytes]:
        """The frames *data* completes, in order (an opaque chunk counts as one)."""
        if self.opaque:
            return [data]
        buf = self._buf
        buf += data
        frames, pos = [], 0
        try:
            while pos < len(buf) and (end := frame_end(buf, pos)) is not None:
                frames.append(bytes(buf[pos:end]))
                pos = end
        except NotResp:
            frames.append(bytes(buf[pos:]))
            self.opaque, self._buf = True, bytearray()
            return frames
        del buf[:pos]
        return frames


class _Link:
    """One client connection through the proxy: its two sockets and what is known of it."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.pubsub = False
        self.up = Framer()
        self.down = Framer()
        self.held: list[bytes] = []
        """Bytes from the server held while pub/sub links are paused."""


class TcpProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._host = host
        self._server: asyncio.Server | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._links: set[_Link] = set()
        self._drop: MessageFilter | None = None
        self._paused = False
        self.dropped: list[tuple[bytes, bytes]] = []
        """(channel, payload) of every pub/sub message dropped so far."""
        self.forwarded_messages = 0
        """Pub/sub messages forwarded (or held) so far."""

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self._port}"

    @property
    def pubsub_links(self) -> int:
        """Open links whose client subscribed to something."""
        return sum(1 for link in self._links if link.pubsub)

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
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._links.clear()

    def drop_messages(self, predicate: MessageFilter | None) -> None:
        """Drop every pub/sub message for which *predicate* is true, from now on (None: none)."""
        self._drop = predicate

    def pause_pubsub(self) -> None:
        """Hold whatever Redis sends on pub/sub links (the sockets stay open, nothing is read
        by the subscriber) until :meth:`resume_pubsub`."""
        self._paused = True

    def resume_pubsub(self) -> None:
        """Forward what was held, in order, and everything after it."""
        self._paused = False
        for link in list(self._links):
            held, link.held = link.held, []
            if held:
                link.client.write(b"".join(held))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, lambda data: self._to_server(link, data)),
                self._pipe(up_reader, writer, lambda data: self._to_client(link, data)),
                return_exceptions=True,
            )
        finally:
            self._links.discard(link)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framer: Callable[[bytes], bytes],
    ) -> None:
        try:
            while data := await reader.read(65536):
                out = framer(data)
                if out:
                    writer.write(out)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()

    def _to_server(self, link: _Link, data: bytes) -> bytes:
        """Commands pass unchanged; a subscribe command marks the link as pub/sub."""
        if not link.pubsub and not link.up.opaque:
            for frame in link.up.feed(data):
                name = _bulks(frame, 1)
                if name and name[0].upper() in _PUBSUB_COMMANDS:
                    link.pubsub = True
                    break
        return data

    def _to_client(self, link: _Link, data: bytes) -> bytes:
        """Replies pass unchanged (whole frames); pub/sub pushes may be dropped or held."""
        kept = []
        for frame in link.down.feed(data):
            message = None if link.down.opaque else pubsub_message(frame)
            if message is not None:
                if self._drop is not None and self._drop(*message):
                    self.dropped.append(message)
                    continue
                self.forwarded_messages += 1
            kept.append(frame)
        out = b"".join(kept)
        if self._paused and link.pubsub:
            link.held.append(out)
            return b""
        return out
