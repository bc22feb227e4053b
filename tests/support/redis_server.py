"""A real redis-server on a free loopback port, owned by one test or one benchmark run.

The one launcher of redis-server and the one :func:`free_port` for Python code in this
repository (the suite's ``redis_server`` fixture, the benchmark).

    server = RedisServer(tmp_path)
    server.start()                   # returns once PING answers
    server.restart(keep_data=False)  # same port; history lost, as after a crash
    server.restart(keep_data=True)   # same port; data saved and reloaded (RDB)
    server.stop()

Data survives a restart only when asked: ``keep_data=True`` shuts down with ``SHUTDOWN SAVE``
into the server's own directory and the next start loads that snapshot. The server runs with
``--save ''`` otherwise, so nothing is written behind the test's back.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_DUMP = "dump.rdb"


class RedisServerError(RuntimeError):
    """redis-server is missing or did not start; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just gave out on *host* (free unless someone races for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _ask(port: int, command: bytes, timeout_s: float = 0.5) -> bytes:
    """Send one inline command and return the first bytes of the reply (b"" if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(command + b"\r\n")
        try:
            return sock.recv(64)
        except (TimeoutError, ConnectionError):
            return b""


class RedisServer:
    """One redis-server process at a time on a fixed port; see the module docstring."""

    @classmethod
    def launch(
        cls, workdir: Path, *, attempts: int = 3, extra_args: Sequence[str] = ()
    ) -> RedisServer:
        """A started server on a free port, trying another port if one was taken meanwhile."""
        for attempt in range(attempts):
            server = cls(workdir, extra_args=extra_args)
            try:
                server.start()
            except RedisServerError:
                server.close()
                if attempt == attempts - 1:
                    raise
            else:
                return server
        raise AssertionError("unreachable")

    def __init__(
        self, workdir: Path, *, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        """*extra_args* are added to the command line (``--maxclients 20000``, say)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError(
                "redis-server is not on PATH; install it (apt-get install redis-server)"
            )
        self._binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self._extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (for CPU sampling), else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server on :attr:`port`; return once it answers PING."""
        if self.running:
            return
        log = self.dir / "redis.log"
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.dir),
                "--dbfilename", _DUMP,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--enable-debug-command", "local",
                "--logfile", str(log),
                *self._extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_until_ready(log)

    def _wait_until_ready(self, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.running:
                break
            try:
                if _ask(self.port, b"PING").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        self.kill()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise RedisServerError(f"redis-server did not start on port {self.port}:\n{tail}")

    def stop(self, *, keep_data: bool = False) -> None:
        """Shut the server down; with *keep_data* the next :meth:`start` reloads its data."""
        if not keep_data:
            (self.dir / _DUMP).unlink(missing_ok=True)
        if not self.running:
            return
        # The server closes the connection without a reply when it shuts down.
        with contextlib.suppress(OSError):
            _ask(self.port, b"SHUTDOWN SAVE" if keep_data else b"SHUTDOWN NOSAVE", timeout_s=2.0)
        self._wait_or_kill()

    def restart(self, keep_data: bool) -> None:
        """Stop and start again on the same port (clients see their connections drop)."""
        self.stop(keep_data=keep_data)
        self.start()

    def kill(self) -> None:
        """SIGKILL the server (a crash; nothing is saved)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._wait_or_kill()

    def _wait_or_kill(self) -> None:
        if self._process is None:
            return
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def client(self) -> redis.Redis:
        """A synchronous client for test set-up and fault injection; closed by :meth:`close`."""
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Kill the server, close the clients it handed out, forget its data (teardown)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.kill()
        (self.dir / _DUMP).unlink(missing_ok=True)
