"""Raw TCP to a worker: plain HTTP, hand-made handshakes and frames, bytes that are not HTTP.

The ``websockets`` client cannot send what a well-behaved client never sends (garbage instead
of a request line, frames that break RFC 6455) nor keep a bare TCP connection open across a
drain; this module can. Every function closes what it opens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    """Header names lowercased."""
    body: bytes


def parse_http_answer(raw: bytes) -> HttpAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpAnswer(int(status_line.split()[1]), headers, body)


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()


def upgrade_request(path: str = "/ws", subprotocol: str | None = "herald.v1.json") -> bytes:
    """A websocket opening handshake (RFC 6455 section 4.1)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, masked: bool = True
) -> bytes:
    """One client frame as RFC 6455 section 5.2 lays it out; any field may be made wrong."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def extended_length_bytes(second_byte: int) -> int:
    """How many length bytes follow a frame's first two (RFC 6455 section 5.2): 0, 2 or 8."""
    n = second_byte & 0x7F
    return 2 if n == 126 else 8 if n == 127 else 0


def parse_server_frame(frame: bytes) -> tuple[int, bytes]:
    """The opcode and payload of one complete, unmasked server frame."""
    extra = extended_length_bytes(frame[1])
    n = int.from_bytes(frame[2 : 2 + extra], "big") if extra else frame[1] & 0x7F
    start = 2 + extra
    assert len(frame) == start + n, f"not one frame: {len(frame)} bytes for a {n}-byte payload"
    return frame[0] & 0x0F, frame[start:]


def take_server_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """The complete server frames at the start of *buf*, each as (opcode, payload), taken
    out of it; an incomplete last frame stays for the next bytes."""
    frames = []
    pos, n = 0, len(buf)
    while n - pos >= 2:
        extra = extended_length_bytes(buf[pos + 1])
        head = 2 + extra
        if n - pos < head:
            break
        short = buf[pos + 1] & 0x7F
        length = int.from_bytes(buf[pos + 2 : pos + head], "big") if extra else short
        if n - pos < head + length:
            break
        frames.append((buf[pos] & 0x0F, bytes(buf[pos + head : pos + head + length])))
        pos += head + length
    del buf[:pos]
    return frames


def read_server_frame(read: Callable[[int], bytes]) -> tuple[int, bytes]:
    """The opcode and payload of the next server frame from a blocking *read(n)*."""
    head = read(2)
    extra = read(extended_length_bytes(head[1]))
    return parse_server_frame(head + extra + read(_length(head, extra)))


def _length(head: bytes, extra: bytes) -> int:
    return int.from_bytes(extra, "big") if extra else head[1] & 0x7F


class RawConnection:
    """One TCP connection to a worker, opened before anything is sent on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, data: bytes, timeout: float = 30.0) -> bytes:
        """Send *data*, then read until the worker closes its side (or *timeout*)."""
        self.writer.write(data)
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def open_websocket(self, subprotocol: str | None = "herald.v1.json") -> None:
        """Complete the opening handshake; what follows on this connection is frames."""
        answer = await self.read_http_head(upgrade_request(subprotocol=subprotocol))
        assert answer.status == 101, answer

    async def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def read_frame(self, timeout: float = 30.0) -> tuple[int, bytes]:
        """The opcode and payload of the next (unmasked, server) frame."""
        head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        extra = await self.reader.readexactly(extended_length_bytes(head[1]))
        return head[0] & 0x0F, await self.reader.readexactly(_length(head, extra))

    async def close_code(self) -> int:
        """Skip frames up to the server's close frame; its code."""
        while True:
            opcode, payload = await self.read_frame()
            if opcode == OP_CLOSE:
                return int.from_bytes(payload[:2], "big")

    async def read_http_head(self, data: bytes, timeout: float = 30.0) -> HttpAnswer:
        """Send *data* (a request) and read the answer's status line and headers only."""
        self.writer.write(data)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        return parse_http_answer(head)


@contextlib.asynccontextmanager
async def raw_connection(port: int) -> AsyncIterator[RawConnection]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield RawConnection(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def http_get(port: int, path: str) -> HttpAnswer:
    """One plain HTTP GET (the health and metrics paths)."""
    async with raw_connection(port) as conn:
        return parse_http_answer(await conn.exchange(get_request(path)))
