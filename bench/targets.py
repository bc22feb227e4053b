"""What the scenario runner needs to know about each server it measures (bench/README.md).

    target = TARGETS["floor"]          # or get_target("herald"), "socketio", "socketio-node"
    proc = target.start(port, redis_url, workers=2)   # returns once every worker serves
    async with target.publisher(redis_url) as pub:
        await pub.publish("question:1", {"ts": time.time() * 1000, "n": 1})
    target.stop(proc)
    target.adapter                                  # how a load connection speaks to it

Every target runs as ONE process tree whose root is the returned ``Popen``: Herald's own
supervisor with ``--workers N``, for the floor and python-socketio a small supervisor
(bench/peers/supervisor.py) over N processes that share the port with
SO_REUSEPORT, and for Socket.IO on Node.js a node:cluster primary over N workers (the
primary holds the one listening socket and hands connections to the workers). With one
worker the root is the server itself. CPU and memory are the sum over the tree:
:func:`bench.measure.descendants` lists it (the root's children are the workers).

"Ready" means: the server said so (stdout "ready", or GET /readyz 200 for Herald) and the
kernel lists as many listening sockets on the port as there are workers (one for node:cluster,
whose workers share the primary's), so no worker is still starting when the load arrives.

A target's program is Python (``sys.executable``) unless its ``program`` says otherwise:
Socket.IO on Node.js runs ``node`` on bench/peers/socketio_node/server.mjs, whose pinned
packages ``npm ci`` installs on first use (:func:`node_peer_installed`).

Channel names: use names Herald accepts (``question:1``, ``tag:bench``, ``user:7``); the
other targets take any name.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

from bench.loadgen.adapters import Adapter
from bench.measure import descendants

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from publisher.publish import Publisher

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0

HERALD_ENV = {
    "HERALD_LOG_LEVEL": "WARNING",
    "HERALD_MAX_CONNECTIONS": "19500",
    "HERALD_PING_INTERVAL_S": "25",
    "HERALD_OUTBOX_MAX_BYTES": "4194304",
    # The load generator's clients reconnect only when a scenario tells them to, so a worker
    # shedding its excess (4007) would count as lost clients; shedding has its own test.
    "HERALD_REBALANCE_INTERVAL_S": "0",
}


Data = Mapping[str, object]
"""A publication's data (JSON-ready)."""

C = TypeVar("C")


class TargetPublisher(Generic[C]):
    """Publishes to one target from the runner's process over its client *C*: ``async with``
    it, or call :meth:`open` once and :meth:`close` once."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._client: C | None = None
        self.retries = 0
        """Publications sent again after a failed attempt (Herald's only: its event ids
        make a second attempt safe)."""

    async def open(self) -> None:
        self._client = self._connect()

    async def publish(self, channel: str, data: Data) -> None:
        if self._client is None:
            raise RuntimeError("open() the publisher before publishing")
        await self._send(self._client, channel, data)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self._disconnect(client)

    def _connect(self) -> C:
        raise NotImplementedError

    async def _send(self, client: C, channel: str, data: Data) -> None:
        raise NotImplementedError

    async def _disconnect(self, client: C) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


AnyPublisher = TargetPublisher[Any]
"""Any target's publisher, as the scenarios hold it."""

BENCH_PUBLISH_TIMEOUT_S = 60.0
"""How long the bench's Herald publisher waits for Redis's reply to one publication."""
PUBLISH_CONNECTIONS = 256
"""Connections of a plain-Redis publisher: as many as the publications a RatePublisher keeps
in flight (bench/scenarios/publishing.py); past them a publish waits for one. redis-py's
default pool holds 100 and raises MaxConnectionsError past them: 161 publications of a smoke
Q&A mix on the floor failed so beside a CPU hog."""


def _redis(url: str) -> Redis:
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url, max_connections=PUBLISH_CONNECTIONS, timeout=BENCH_PUBLISH_TIMEOUT_S
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


PUBLISH_ATTEMPTS = 3
"""How often the bench's Herald publisher sends one publication (with the same event id)."""


class HeraldPublisher(TargetPublisher["Publisher"]):
    """The real publishing path: script, stream, pub/sub (``publisher.publish.Publisher``)."""

    def _connect(self) -> Publisher:
        from publisher.publish import Publisher

        # The library's 5 s reply timeout is a production default; on a 2-core machine shared
        # with the fleet, the load generators and CI, Redis can answer a burst of 256 scripts
        # in flight later than that, and the bench would count publications the clients then
        # never expect. The bench measures delivery: its publisher waits longer.
        return Publisher(self.redis_url, socket_timeout_s=BENCH_PUBLISH_TIMEOUT_S)

    async def _send(self, client: Publisher, channel: str, data: Data) -> None:
        # As the Q&A site's outbox relay does: an event id on every publication, and a failed
        # one sent again with the same id, which publishes it at most once. Without them a
        # publication whose reply was lost on a loaded machine counted as failed (so the
        # clients did not expect it) although it may have been made.
        from herald_contract.errors import PublishFailed

        event_id = uuid.uuid4().hex
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await client.publish(channel, data, event_id=event_id)
                return
            except PublishFailed:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                self.retries += 1

    async def _disconnect(self, client: Publisher) -> None:
        await client.close()


class FloorPublisher(TargetPublisher["Redis"]):
    """``PUBLISH floor:<channel> <json data>``; the floor server frames it once."""

    def _connect(self) -> Redis:
        return _redis(self.redis_url)

    async def _send(self, client: Redis, channel: str, data: Data) -> None:
        await client.publish("floor:" + channel, json.dumps(data, separators=(",", ":")))

    async def _disconnect(self, client: Redis) -> None:
        await client.aclose()


class SocketIOPublisher(TargetPublisher[Any]):
    """``AsyncRedisManager(url, write_only=True).emit("pub", data, room=channel)``: the
    documented way for another process to emit (python-socketio ships no types: Any)."""

    def _connect(self) -> Any:
        import socketio  # type: ignore[import-untyped]  # python-socketio ships no types

        return socketio.AsyncRedisManager(self.redis_url, write_only=True)

    async def _send(self, client: Any, channel: str, data: Data) -> None:
        await client.emit("pub", data, room=channel)

    async def _disconnect(self, client: Any) -> None:
        if client.redis is not None:
            await client.redis.aclose()


SOCKETIO_NODE_PREFIX = "socket.io"
"""The sharded Redis adapter's ``channelPrefix`` (its default)."""
SOCKETIO_EMITTER_UID = "emitter"
"""The sender id socket.io-adapter reserves for emitters (not counted as a server node)."""


def socketio_node_message(channel: str, data: Data) -> tuple[str, bytes]:
    """The Redis channel and message with which @socket.io/redis-adapter's sharded adapter
    (subscription mode "dynamic") broadcasts ``io.to(channel).emit("pub", data)``: SPUBLISH
    to ``socket.io#/#<room>#``, a ClusterAdapter BROADCAST message, JSON-encoded (the adapter
    uses msgpack only when the data holds binary), byte for byte what the adapter writes."""
    message = {
        "type": 3,  # socket.io-adapter MessageType.BROADCAST
        "data": {
            "packet": {"type": 2, "data": ["pub", data]},  # socket.io-parser EVENT
            "opts": {"rooms": [channel], "except": [], "flags": {}},
        },
        "uid": SOCKETIO_EMITTER_UID,
        "nsp": "/",
    }
    body = json.dumps(message, separators=(",", ":")).encode()
    return f"{SOCKETIO_NODE_PREFIX}#/#{channel}#", body


class SocketIONodePublisher(TargetPublisher["Redis"]):
    """``SPUBLISH socket.io#/#<channel># <BROADCAST message>``: what the sharded Redis adapter
    of another Socket.IO server publishes for ``io.to(channel).emit("pub", data)``
    (:func:`socketio_node_message`); every worker subscribed to that room's channel
    delivers it to its sockets in the room."""

    def _connect(self) -> Redis:
        return _redis(self.redis_url)

    async def _send(self, client: Redis, channel: str, data: Data) -> None:
        await client.spublish(*socketio_node_message(channel, data))

    async def _disconnect(self, client: Redis) -> None:
        await client.aclose()


Command = Callable[[int, str, int], list[str]]


def python_program() -> list[str]:
    return [sys.executable]


@dataclass
class Target:
    name: str
    adapter_factory: Callable[[], Adapter]
    command: Command
    """(port, redis_url, workers) -> argv."""
    publisher_factory: Callable[[str], AnyPublisher]
    ready: Literal["stdout", "readyz"]
    env: dict[str, str] = field(default_factory=dict)
    program: Callable[[], list[str]] = python_program
    """The argv before *command*'s; called at each start, so it may prepare the program
    (install what it needs) or raise RuntimeError when it cannot be had."""
    shared_listener: bool = False
    """The workers share one listening socket (node:cluster): ready with 1, not N."""

    @cached_property
    def adapter(self) -> Adapter:
        return self.adapter_factory()

    def publisher(self, redis_url: str) -> AnyPublisher:
        """A publisher for this target; ``async with`` it, or call open() and close()."""
        return self.publisher_factory(redis_url)

    def start(
        self,
        port: int,
        redis_url: str,
        workers: int = 1,
        *,
        timeout_s: float = START_TIMEOUT_S,
        stderr: IO[bytes] | int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start the server on 127.0.0.1:*port*; return once every worker serves.

        Raises RuntimeError (the server exited) or TimeoutError; the process is stopped then.
        *stderr* is inherited unless given (a file, or subprocess.DEVNULL).
        """
        argv = [*self.program(), *self.command(port, redis_url, workers)]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE if self.ready == "stdout" else subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + timeout_s
            if self.ready == "stdout":
                _wait_ready_line(proc, deadline)
            _wait_listening(proc, port, 1 if self.shared_listener else workers, deadline)
            if self.ready == "readyz":
                _wait_readyz(proc, port, workers, deadline)
        except BaseException:
            stop(proc)
            raise
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
        return stop(proc, timeout_s)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, wait up to *timeout_s*, then SIGKILL the whole tree; return the exit status."""
    if proc.poll() is None:
        tree = descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            for pid in reversed(tree):  # workers first, so none is restarted meanwhile
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()
    return proc.returncode


def _check_alive(proc: subprocess.Popen[bytes], deadline: float, what: str) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"server exited with {proc.returncode} before {what}")
    if time.monotonic() > deadline:
        raise TimeoutError(f"server not ready in time ({what})")


def _wait_ready_line(proc: subprocess.Popen[bytes], deadline: float) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    while b"ready" not in seen:
        _check_alive(proc, deadline, 'printing "ready"')
        readable, _, _ = select.select([fd], [], [], 0.1)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:  # stdout closed: the server is on its way out
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1.0)
                raise RuntimeError(f'server closed stdout before "ready" ({proc.poll()})')
            seen = (seen + chunk)[-4096:]
    # Keep draining: a server that prints later must never block on a full pipe.
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(65536):
            pass


def listening_sockets(port: int) -> int:
    """How many sockets listen on *port* (IPv4 and IPv6), from /proc/net/tcp*."""
    hex_port = f":{port:04X}"
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(name).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(hex_port) and fields[3] == "0A":
                    count += 1
    return count


def _wait_listening(
    proc: subprocess.Popen[bytes], port: int, workers: int, deadline: float
) -> None:
    while listening_sockets(port) < workers:
        _check_alive(proc, deadline, f"{workers} listening socket(s) on port {port}")
        time.sleep(0.05)


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def _wait_readyz(proc: subprocess.Popen[bytes], port: int, workers: int, deadline: float) -> None:
    # Each request lands on some worker (SO_REUSEPORT hashes the new connection): ask
    # several times in a row so that a worker still connecting to Redis is unlikely to hide.
    wanted = 4 * workers
    streak = 0
    while streak < wanted:
        _check_alive(proc, deadline, "GET /readyz 200")
        if _get(port, "/readyz") == 200:
            streak += 1
        else:
            streak = 0
            time.sleep(0.05)


def _herald_adapter() -> Adapter:
    from bench.loadgen.herald import HeraldAdapter  # written alongside the load engine

    adapter: Adapter = HeraldAdapter()
    return adapter


def _floor_adapter() -> Adapter:
    from bench.peers.floor_adapter import FloorAdapter

    return FloorAdapter()


def _socketio_adapter() -> Adapter:
    from bench.peers.socketio_adapter import SocketIOAdapter

    return SocketIOAdapter()


SOCKETIO_NODE = ROOT / "bench" / "peers" / "socketio_node"
NPM_CI = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
NPM_CI_TIMEOUT_S = 600.0


def node_peer_installed(directory: Path = SOCKETIO_NODE) -> Path:
    """*directory* with its node_modules as its package-lock.json pins them: ``npm ci``
    when missing or stale. Processes take turns on a lock file there (parallel test
    workers, a bench run beside them): the first installs, the others find it done.
    Raises RuntimeError when node or npm is missing or the install fails."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: install Node >= 20 for the Socket.IO peer")
    with (directory / ".npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _node_modules_match(directory):
            done = subprocess.run(
                NPM_CI, cwd=directory, capture_output=True, text=True, check=False,
                timeout=NPM_CI_TIMEOUT_S,
            )  # fmt: skip
            if done.returncode != 0 or not _node_modules_match(directory):
                raise RuntimeError(f"npm ci in {directory} failed:\n{done.stdout}{done.stderr}")
    return directory


def _node_modules_match(directory: Path) -> bool:
    """Whether node_modules holds every package package-lock.json pins, at its version
    (npm records what it installed in node_modules/.package-lock.json); optional packages
    (ws's native add-ons) may be missing on a platform without their prebuilt binaries."""
    try:
        wanted = json.loads((directory / "package-lock.json").read_text())["packages"]
        have = json.loads((directory / "node_modules" / ".package-lock.json").read_text())
    except (OSError, ValueError, KeyError):
        return False
    installed = have.get("packages", {})
    for path, pkg in wanted.items():
        if not path:
            continue  # the root package itself
        got = installed.get(path)
        if got is None and pkg.get("optional"):
            continue
        if got is None or got.get("version") != pkg.get("version"):
            return False
    return True


def _node_program() -> list[str]:
    node_peer_installed()
    node = shutil.which("node")
    assert node is not None  # node_peer_installed checked it
    return [node, str(SOCKETIO_NODE / "server.mjs")]


def _node_command(port: int, redis_url: str, workers: int) -> list[str]:
    return ["--port", str(port), "--redis-url", redis_url, "--workers", str(workers)]


def _socketio_node_adapter() -> Adapter:
    from bench.peers.socketio_adapter import SocketIOAdapter

    return SocketIOAdapter(wait_for_connect=True)


def _peer_command(module: str) -> Command:
    def command(port: int, redis_url: str, workers: int) -> list[str]:
        return ["-m", module, "--port", str(port), "--redis-url", redis_url,
                "--workers", str(workers)]  # fmt: skip

    return command


def _herald_command(port: int, redis_url: str, workers: int) -> list[str]:
    return ["-m", "socketsrv", "--port", str(port), "--workers", str(workers),
            "--redis-url", redis_url]  # fmt: skip


TARGETS: dict[str, Target] = {
    "herald": Target(
        name="herald",
        adapter_factory=_herald_adapter,
        command=_herald_command,
        publisher_factory=HeraldPublisher,
        ready="readyz",
        env=dict(HERALD_ENV),
    ),
    "floor": Target(
        name="floor",
        adapter_factory=_floor_adapter,
        command=_peer_command("bench.peers.floor"),
        publisher_factory=FloorPublisher,
        ready="stdout",
    ),
    "socketio": Target(
        name="socketio",
        adapter_factory=_socketio_adapter,
        command=_peer_command("bench.peers.socketio_server"),
        publisher_factory=SocketIOPublisher,
        ready="stdout",
    ),
    "socketio-node": Target(
        name="socketio-node",
        adapter_factory=_socketio_node_adapter,
        command=_node_command,
        publisher_factory=SocketIONodePublisher,
        ready="stdout",
        program=_node_program,
        shared_listener=True,
    ),
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise KeyError(f"unknown target {name!r}; known: {', '.join(TARGETS)}") from None
