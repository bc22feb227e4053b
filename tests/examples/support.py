"""The notification example's programs, run from the tests: the Node subscriber as a process
whose JSON lines are read as they come, the Node publisher as a command, the publish API as a
process, and a proxy that loses the answer of the first request sent through it."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import stop_group
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notifications"
NAMESPACES_FILE = EXAMPLE / "namespaces.toml"
API_KEY = "notifications-0123456789abcdef"
NODE = shutil.which("node") or "/usr/bin/node"
WAIT_S = 30.0
"""How long a condition may take to become true: generous, for a loaded 2-core machine."""

Event = dict[str, Any]


def wait_until(what: str, condition: Callable[[], bool], detail: Callable[[], str]) -> None:
    """Return once *condition()* holds; fail naming *what* (and *detail()*) after WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{detail()}")
        time.sleep(0.02)


class Subscriber:
    """``node --experimental-websocket subscriber.mjs``: client-js subscribed to *channels*
    with *token*; every line it prints is kept in :attr:`events`, in order."""

    def __init__(self, socket_url: str, channels: list[str], token: str | None = None) -> None:
        env = {**os.environ, "HERALD_TOKEN": token or ""}
        self.process = subprocess.Popen(
            [NODE, "--experimental-websocket", "--no-warnings", str(EXAMPLE / "subscriber.mjs"),
             "--url", socket_url, *channels],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.events: list[Event] = []
        self._stderr: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def detail(self) -> str:
        stderr = b"".join(self._stderr).decode(errors="replace")
        return f"events: {json.dumps(self.events)}\nstderr: {stderr[-3000:]}"

    def of(self, kind: str, channel: str | None = None) -> list[Event]:
        return [
            e for e in self.events if e["event"] == kind and channel in (None, e.get("channel"))
        ]

    def publications(self, channel: str) -> list[Event]:
        return self.of("publication", channel)

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        def holds() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the subscriber exited while waiting for {what}")
            return condition()

        wait_until(what, holds, self.detail)

    def wait_subscribed(self, *channels: str) -> None:
        self.wait_for(
            f"subscribed to {channels}",
            lambda: all(self.of("subscribed", channel) for channel in channels),
        )

    def wait_publications(self, channel: str, count: int) -> list[Event]:
        self.wait_for(
            f"{count} publications of {channel}", lambda: len(self.publications(channel)) >= count
        )
        return self.publications(channel)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the end of stdin: it closes the client and exits
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        stop_group(self.process)
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def subscriber(
    socket_url: str, channels: list[str], token: str | None = None
) -> Iterator[Subscriber]:
    running = Subscriber(socket_url, channels, token)
    try:
        yield running
    finally:
        running.close()


def publish(api_url: str, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    """``node publisher.mjs <args>`` against *api_url*; the command and its JSON answer."""
    done = subprocess.run(
        [NODE, str(EXAMPLE / "publisher.mjs"), *args, "--api", api_url,
         "--timeout-ms", "30000", "--retry-for-ms", "60000"],
        cwd=ROOT, env={**os.environ, "HERALD_API_KEY": API_KEY},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"publisher {args} exited {done.returncode}:\n{done.stderr}"
    return done, json.loads(done.stdout)


class PublishApi:
    """``python -m publish_api`` on a free port, over *redis_url*, with the example's file."""

    def __init__(self, redis_url: str, log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = log.open("wb")
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "HERALD_REDIS_URL": redis_url,
            "HERALD_API_KEYS": f"notifications:{API_KEY}",
            "HERALD_API_PORT": str(self.port),
            "HERALD_NAMESPACES_FILE": str(NAMESPACES_FILE),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "publish_api"], cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def wait_ready(self) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the publish API exited:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until("the publish API", answers, self.log)

    def close(self) -> None:
        stop_group(self.process)
        self._log.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_server() -> Iterator[str]:
    """The repository's files over HTTP on a free loopback port (the example page imports
    ../../client-js/dist/index.js, as under any static server run from the root)."""
    handler = functools.partial(_QuietHandler, directory=str(ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class AnswerLosingProxy:
    """A TCP proxy to *upstream_port* that forwards the first connection's request but closes
    it, unanswered, as soon as the answer arrives (a network that broke at the worst moment:
    the request was carried out, its caller never hears so); later connections pass through.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self.answers_lost = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            lose = self.connections == 1
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, lose), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, lose: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if lose:
                    self.answers_lost += 1
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
