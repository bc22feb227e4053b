"""Helpers of the HTTP limit tests: the Q&A core served by uvicorn on a loopback socket, with
the options the commands use, and raw HTTP/1.1 over asyncio streams (httpx refuses the junk
these tests send)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

from qasite.api.server import Parser, server_options
from qasite.core.settings import Settings
from qasite.main import create_app
from tests.qasite.support import WAIT_BOUND_S, RecordingSink, qa_settings


def sqlite_settings(tmp_path: Path, template: Path, **changes: Any) -> Settings:
    """Settings on a fresh copy of the migrated SQLite template."""
    path = tmp_path / "qa.sqlite3"
    shutil.copyfile(template, path)
    return qa_settings(tmp_path, f"sqlite:///{path}", **changes)


@asynccontextmanager
async def serving(settings: Settings, parser: Parser = "h11") -> AsyncIterator[int]:
    """The app served by uvicorn (``server_options(settings, parser)``) on this event loop;
    yields the port. The listening socket is bound here, so no other process can take it."""
    app = create_app(settings, sink=RecordingSink(), migrate_on_start=False)
    config = uvicorn.Config(app, log_level="error", **server_options(settings, parser))
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT_BOUND_S):
            while not server.started:
                if task.done():
                    await task
                    raise AssertionError("the server did not start")
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(WAIT_BOUND_S):
            await task
        sock.close()


async def read_to_eof(reader: asyncio.StreamReader, bound_s: float = WAIT_BOUND_S) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not close
    within *bound_s* (a bound against a hang, not a measured window)."""
    try:
        async with asyncio.timeout(bound_s):
            return await reader.read()
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open past {bound_s} s") from None


async def exchange(port: int, raw: bytes) -> bytes:
    """Send *raw* (one request, ``Connection: close``) and return the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await read_to_eof(reader)
    finally:
        writer.close()


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: qa.test", "Connection: close", *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of *name* in a Prometheus text exposition: (labels, value)."""
    found = []
    for line in metrics_text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1)))
            found.append((labels, float(match.group(2))))
    return found


async def refused(port: int, reason: str) -> float:
    """``herald_qa_http_refused_total{reason=...}`` as the server reports it now."""
    text = body_of(await exchange(port, request("GET", "/metrics"))).decode()
    values = [v for labels, v in samples(text, "herald_qa_http_refused_total") if
              labels.get("reason") == reason]  # fmt: skip
    return sum(values)
