"""A real Sentinel-managed Redis on free loopback ports: a primary, a replica, 3 sentinels.

    with SentinelGroup.launch(tmp_path) as group:   # returns once the sentinels know both
        group.url                                   # redis+sentinel://.../herald/0
        group.failover()                            # SENTINEL FAILOVER; returns once done
        group.kill_primary()                        # SIGKILL; returns once one is promoted
        group.primary_port                          # the primary the sentinels report

Every process the group starts is stopped when it exits (also when a start fails half-way).
The sentinels run with ``down-after-milliseconds 1000`` and ``failover-timeout 5000``, so a
forced failover finishes in about a second. redis-sentinel comes from Debian's
redis-sentinel package (``./herald test`` installs it); without it a test fails under
``CI=true`` and is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.support.redis_server import RedisServer, RedisServerError, free_port

SERVICE = "herald"
SENTINELS = 3
QUORUM = 2
READY_TIMEOUT_S = 30.0
FAILOVER_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


def require_redis_sentinel() -> str:
    """The redis-sentinel binary; skips the test without it, or fails it under CI=true."""
    binary = shutil.which("redis-sentinel")
    if binary is None:
        why = "redis-sentinel is not on PATH (apt-get install redis-sentinel; ./herald test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return binary


def wait_for(what: str, condition: Callable[[], bool], timeout_s: float) -> None:
    """Return once *condition()* holds (errors count as not yet); fail after *timeout_s*."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)


class Sentinel:
    """One redis-sentinel process on a free port."""

    def __init__(self, binary: str, workdir: Path, primary_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.dir = workdir
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "daemonize no\n"
            f"dir {workdir}\n"
            f"logfile {workdir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self._process = subprocess.Popen(
            [binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2.0, decode_responses=True
        )

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def primary(self) -> tuple[str, int] | None:
        """The primary's address as this sentinel reports it."""
        reply = self.client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return None if reply is None else (reply[0], int(reply[1]))

    def close(self) -> None:
        self.client.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class SentinelGroup:
    """A primary, a replica and 3 sentinels watching them (see the module docstring)."""

    @classmethod
    def launch(cls, workdir: Path) -> SentinelGroup:
        binary = require_redis_sentinel()
        group = cls()
        try:
            group._start(binary, workdir)
        except BaseException:
            group.close()
            raise
        return group

    def __init__(self) -> None:
        self.servers: list[RedisServer] = []
        self.sentinels: list[Sentinel] = []

    def _start(self, binary: str, workdir: Path) -> None:
        primary = RedisServer.launch(workdir / "redis-a")
        self.servers.append(primary)
        replica = RedisServer.launch(
            workdir / "redis-b", extra_args=("--replicaof", "127.0.0.1", str(primary.port))
        )
        self.servers.append(replica)
        for number in range(SENTINELS):
            self.sentinels.append(Sentinel(binary, workdir / f"sentinel-{number}", primary.port))
        replica_client = replica.client()
        wait_for("the replica in sync", lambda: _link_up(replica_client), READY_TIMEOUT_S)
        wait_for("the sentinels ready", self._sentinels_ready, READY_TIMEOUT_S)

    def _sentinels_ready(self) -> bool:
        """Each sentinel answers, sees the others and a replica fit to be promoted."""
        for sentinel in self.sentinels:
            if not sentinel.running:
                raise RedisServerError(f"redis-sentinel on port {sentinel.port} exited")
            master = sentinel.client.execute_command("SENTINEL", "MASTER", SERVICE)
            fields = _pairs(master)
            if int(fields.get("num-other-sentinels", 0)) < SENTINELS - 1:
                return False
            replicas = [
                _pairs(r) for r in sentinel.client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            ]
            if not any(_fit(replica) for replica in replicas):
                return False
        return True

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    @property
    def primary_port(self) -> int:
        address = self.sentinels[0].primary()
        assert address is not None
        return address[1]

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    def failover(self) -> int:
        """Promote the replica with SENTINEL FAILOVER; return the new primary's port.

        Returns once every sentinel reports the new primary and the old one serves as its
        replica (Sentinel killed the old primary's clients when it demoted it).
        """
        old = self.primary_port
        self.sentinels[0].client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        new = next(server.port for server in self.servers if server.port != old)
        demoted = self.server(old).client()

        def done() -> bool:
            if any(sentinel.primary() != ("127.0.0.1", new) for sentinel in self.sentinels):
                return False
            return bool(demoted.execute_command("ROLE")[0] == b"slave") and _link_up(demoted)

        wait_for("the failover", done, FAILOVER_TIMEOUT_S)
        return new

    def kill_primary(self) -> int:
        """SIGKILL the primary; return the port of the replica once every sentinel reports it.

        The sentinels notice after ``down-after-milliseconds``, agree, elect a leader and
        promote the replica: a few seconds.
        """
        old = self.primary_port
        self.server(old).kill()
        new = next(server.port for server in self.servers if server.port != old)
        promoted = self.server(new).client()

        def done() -> bool:
            if any(sentinel.primary() != ("127.0.0.1", new) for sentinel in self.sentinels):
                return False
            return bool(promoted.execute_command("ROLE")[0] == b"master")

        wait_for("the failover after a SIGKILL", done, FAILOVER_TIMEOUT_S)
        return new

    def close(self) -> None:
        """Stop every sentinel and server (teardown; safe after a failed start)."""
        for sentinel in self.sentinels:
            sentinel.close()
        for server in self.servers:
            server.close()

    def __enter__(self) -> SentinelGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pairs(flat: object) -> dict[str, str]:
    """A Sentinel reply (a flat list of names and values, or a dict) as a dict."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    assert isinstance(flat, list)
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _fit(replica: dict[str, str]) -> bool:
    flags = replica.get("flags", "").split(",")
    return (
        "slave" in flags
        and not {"s_down", "o_down", "disconnected"} & set(flags)
        and replica.get("master-link-status") == "ok"
    )


def _link_up(client: redis.Redis) -> bool:
    info = client.info("replication")
    return info.get("master_link_status") == "up"
