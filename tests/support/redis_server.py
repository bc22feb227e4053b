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
import itertools
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_DUMP = "dump.rdb"


class RedisServerError(RuntimeError):
    """redis-server is missing or did not start; the message says why."""


# free_port() hands out ports below the kernel's ephemeral range, so that an outgoing
# connection's source port never takes one between the pick and the server's bind, and each
# pytest-xdist worker (PYTEST_XDIST_WORKER=gw<N>, inherited by the processes a test starts) has
# its own slot, so that two workers never pick the same port. Within a slot, a process walks
# its own random order of the slot's ports: consecutive calls give different ports, and two
# processes of one slot (a test and the bench it starts) seldom try the same one.
_PORTS_FROM = 10_000
_PORTS_PER_SLOT = 1_500
_cursors: dict[int, Iterator[int]] = {}


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _slot() -> int:
    """0 outside xdist, N + 1 for worker gwN (wrapping when there are more workers than slots)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    slots = max(1, (_ephemeral_low() - _PORTS_FROM) // _PORTS_PER_SLOT)
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return 0
    return (int(worker[2:]) + 1) % slots


def _candidates(slot: int) -> Iterator[int]:
    first = _PORTS_FROM + slot * _PORTS_PER_SLOT
    order = random.sample(range(first, first + _PORTS_PER_SLOT), _PORTS_PER_SLOT)
    return itertools.cycle(order)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to on *host*, from this process's slot (see above): no other
    xdist worker picks it, and no outgoing connection takes it meanwhile."""
    if _ephemeral_low() - _PORTS_FROM < _PORTS_PER_SLOT:  # an unusual kernel setting
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            kernel_port: int = sock.getsockname()[1]
            return kernel_port
    slot = _slot()
    cursor = _cursors.setdefault(slot, _candidates(slot))
    for _ in range(_PORTS_PER_SLOT):
        port = next(cursor)
        if _bindable(host, port):
            return port
    raise RedisServerError(f"no free port on {host} in slot {slot}")


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
                # A replica's first sync starts at once, not after the default 5 s wait for
                # other replicas (each failover test would otherwise wait it out).
                "--repl-diskless-sync-delay", "0",
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
