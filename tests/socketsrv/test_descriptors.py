"""Descriptor exhaustion (issue 11, item 9, the fleet's side; docs/protocol.md#limits).

Under a low RLIMIT_NOFILE a worker used to accept until ``accept`` failed with EMFILE, so
nothing was left for the bus, a reconnect or a health check (libuv then accepts and drops
the connection; with asyncio every failed accept logged a traceback: 57 MB of log in 14 s in
the embedded process). Now a worker keeps
``fd_reserve`` descriptors free: a connection accepted past ``RLIMIT_NOFILE - fd_reserve`` is
closed at once (``herald_handshake_rejections_total{reason="descriptors"}``), so the listener,
the bus and the health checks keep what they need, and the worker serves again as soon as
connections go. Accept errors that still happen are counted and logged once per interval.

The worker runs in a subprocess that lowers its own limit (resource.setrlimit in the child).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest

from socketsrv.host import AcceptErrorLog
from socketsrv.metrics import build_metrics
from tests.support.raw_ws import http_get, upgrade_request

LIMIT = 256
RESERVE = 64
FLOOD = 400
"""Connections opened at once: well past what LIMIT lets the worker hold."""

CHILD = textwrap.dedent(
    f"""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {LIMIT}))
    from socketsrv.fleet import run_single
    from socketsrv.settings import Settings
    settings = Settings(port=0, fd_reserve={RESERVE}, max_connections_per_address=100000,
                        connect_timeout_s=60.0, ping_interval_s=3600.0)
    run_single(settings, on_ready=lambda port: print(port, flush=True))
    """
)


@contextlib.contextmanager
def limited_worker() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the port, once the worker listens
        assert line.strip().isdigit(), (line, child.stderr.read() if child.stderr else b"")
        yield int(line), child
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def upgraded(port: int) -> tuple[bool, asyncio.StreamWriter]:
    """Open one connection and upgrade it: whether the worker answered 101 (else it closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request())
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30.0)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False, writer
    return head.startswith(b"HTTP/1.1 101 "), writer


@contextlib.asynccontextmanager
async def held(port: int, count: int) -> AsyncIterator[list[bool]]:
    """*count* connections opened at once and kept until the block ends; which got a 101."""
    results = await asyncio.gather(*(upgraded(port) for _ in range(count)))
    try:
        yield [ok for ok, _ in results]
    finally:
        for _, writer in results:
            writer.close()


async def test_a_worker_past_its_descriptors_refuses_new_connections_and_recovers() -> None:
    with limited_worker() as (port, child):
        async with held(port, FLOOD) as answered:
            accepted = sum(answered)
            # What the worker held is bounded by its limit less the reserve, and it took
            # most of that (its own descriptors are a few dozen at most).
            assert LIMIT - RESERVE - 64 <= accepted <= LIMIT - RESERVE, accepted
        # Every descriptor is back: the listener survived, new clients get in again.
        async with held(port, 10) as answered:
            assert all(answered), answered
        metrics = (await http_get(port, "/metrics")).body.decode()
        refused = [
            line
            for line in metrics.splitlines()
            if line.startswith('herald_handshake_rejections_total{reason="descriptors"}')
        ]
        assert refused and float(refused[0].split()[-1]) >= FLOOD - accepted, refused
        child.terminate()
        _, stderr = child.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr[-2000:]
    assert len(stderr.splitlines()) < 50, stderr[-2000:]


def test_accept_errors_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    metrics = build_metrics()
    handler = AcceptErrorLog(metrics.accept_errors, interval_s=60.0, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    emfile = OSError(errno.EMFILE, "Too many open files")
    try:
        with caplog.at_level(logging.ERROR, logger="socketsrv.host"):
            for i in range(1000):
                now[0] = i * 0.1  # 100 s of failed accepts, ten a second
                handler(
                    loop, {"message": "socket.accept() out of system resource", "exception": emfile}
                )
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "socketsrv.host"]
    assert len(lines) == 2, [r.getMessage() for r in lines]  # at 0 s and at 60 s
    assert "600 time(s)" in lines[1].getMessage()
    assert all(r.exc_info is None for r in lines)
    assert metrics.registry.get_sample_value("herald_accept_errors_total") == 1000
