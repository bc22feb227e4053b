"""socketsrv/health.py: /healthz and /readyz on ``health_port`` answer whatever the loop is doing.

Issue 12, item 4: during a reconnect storm the public port left health checks unanswered for
up to 8.6 s. The health listener has its own socket and thread: these tests hold the worker's
event loop still, and run a bounded storm of raw handshakes from several processes, and
check that every health request is answered (never how fast) and every handshake completes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from socketsrv.health import HealthListener
from socketsrv.worker import WorkerState
from tests.support.waiting import eventually
from tests.support.worker import running_worker

ROOT = Path(__file__).resolve().parents[2]


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# The listener alone


@pytest.fixture
def listener_parts() -> dict[str, object]:
    return {"ready": True, "turned_at": time.monotonic()}


def start_listener(parts: dict[str, object], stall_s: float = 60.0) -> HealthListener:
    return HealthListener.start(
        "127.0.0.1", 0, lambda: bool(parts["ready"]), lambda: float(parts["turned_at"]),  # type: ignore[arg-type]
        stall_s=stall_s, reuse_port=False,
    )  # fmt: skip


def test_health_and_readiness_answer_200_while_the_loop_turns_and_the_worker_is_ready(
    listener_parts: dict[str, object],
) -> None:
    listener = start_listener(listener_parts)
    try:
        assert get(listener.port, "/healthz") == (200, b"ok\n")
        assert get(listener.port, "/readyz") == (200, b"ready\n")
        assert get(listener.port, "/readyz?verbose=1") == (200, b"ready\n")
        assert get(listener.port, "/healthz", "HEAD") == (200, b"")
    finally:
        listener.close()


def test_an_unready_worker_answers_readyz_503_and_a_wedged_loop_healthz_503(
    listener_parts: dict[str, object],
) -> None:
    listener_parts.update(ready=False, turned_at=time.monotonic() - 61.0)
    listener = start_listener(listener_parts)
    try:
        assert get(listener.port, "/readyz") == (503, b"not ready\n")
        assert get(listener.port, "/healthz") == (503, b"stalled\n")
    finally:
        listener.close()


def test_other_paths_are_404_and_other_methods_are_refused(
    listener_parts: dict[str, object],
) -> None:
    listener = start_listener(listener_parts)
    try:
        assert get(listener.port, "/metrics")[0] == 404
        assert get(listener.port, "/")[0] == 404
        assert get(listener.port, "/healthz", "POST")[0] == 501
    finally:
        listener.close()
        listener.close()  # idempotent


# A worker's listener


async def test_health_requests_are_answered_while_the_event_loop_is_held() -> None:
    async with running_worker(health_port=0) as worker:
        assert worker.health_listener is not None
        port = worker.health_listener.port
        held, release = threading.Event(), threading.Event()

        def hold_the_loop() -> None:
            held.set()
            release.wait(30)  # the loop reads no socket and runs no callback until released

        def probe() -> list[int]:
            assert held.wait(30)
            try:
                return [get(port, "/healthz")[0], get(port, "/readyz")[0]]
            finally:
                release.set()

        asyncio.get_running_loop().call_soon(hold_the_loop)
        assert await asyncio.to_thread(probe) == [200, 200]
    with pytest.raises(urllib.error.URLError):  # closed with the worker
        get(port, "/healthz")


async def test_readyz_on_the_health_port_turns_503_when_the_worker_drains() -> None:
    async with running_worker(health_port=0, drain_grace_s=30.0) as worker:
        assert worker.health_listener is not None
        port = worker.health_listener.port
        draining = asyncio.ensure_future(worker.drain())
        try:
            # The drain has begun (unready) before the probe is sent: asking from the thread
            # at once could be answered before the drain task first ran.
            await eventually(lambda: worker.state is WorkerState.LEAVING)
            assert await asyncio.to_thread(get, port, "/readyz") == (503, b"not ready\n")
            assert (await asyncio.to_thread(get, port, "/healthz"))[0] == 200
        finally:
            worker.end_grace()
            await draining


# A storm of handshakes from several processes

STORM_PROCESSES = 3
STORM_HANDSHAKES = 300
"""Per process: 900 websockets opened at once, each with its connect command."""

STORM = """
import asyncio, json, sys
from tests.support.raw_ws import OP_TEXT, client_frame, upgrade_request

async def one(port, opened):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade_request())
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(client_frame(OP_TEXT, json.dumps({"op": "connect", "id": 1}).encode()))
    first = await reader.readexactly(2)
    n = first[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    assert json.loads(await reader.readexactly(n))["type"] == "reply"
    opened.append(writer)

async def main(port, count):
    opened = []
    results = await asyncio.wait_for(
        asyncio.gather(*(one(port, opened) for _ in range(count)), return_exceptions=True), 120
    )
    print(sum(1 for r in results if r is None), flush=True)
    for writer in opened:
        writer.close()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


@pytest.mark.timeout(180)
async def test_health_requests_are_answered_during_a_storm_of_handshakes() -> None:
    async with running_worker(health_port=0, connect_timeout_s=60.0) as worker:
        assert worker.health_listener is not None
        health_port = worker.health_listener.port
        storm = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", STORM, str(worker.port), str(STORM_HANDSHAKES),
                cwd=ROOT, stdout=subprocess.PIPE,
            )
            for _ in range(STORM_PROCESSES)
        ]  # fmt: skip
        answers: list[int] = []
        storm_over = threading.Event()

        def probe_until_the_storm_is_over() -> None:
            while not storm_over.is_set():
                answers.append(get(health_port, "/healthz")[0])
                answers.append(get(health_port, "/readyz")[0])

        prober = asyncio.ensure_future(asyncio.to_thread(probe_until_the_storm_is_over))
        outputs = [await proc.communicate() for proc in storm]
        storm_over.set()
        await prober
    completed = [int(out.decode().strip() or 0) for out, _ in outputs]
    assert completed == [STORM_HANDSHAKES] * STORM_PROCESSES
    assert answers, "no health request was made during the storm"
    assert set(answers) == {200}
