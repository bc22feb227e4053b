"""A local Redis Cluster from local redis-server processes, with replicas if asked.

    cluster = LocalRedisCluster.launch(workdir, primaries=3, replicas=1)
    cluster.url        # redis+cluster://127.0.0.1:<port> (the bus, the publisher, the relay)
    cluster.seed_url   # redis://127.0.0.1:<port> (redis-py's RedisCluster.from_url)
    cluster.nodes      # every node started, each with .port, .cluster_port, .pid, .node_id
    cluster.close()    # every process killed, whatever state the start reached

:meth:`LocalRedisCluster.launch` returns once every node says ``cluster_state:ok``, knows
every other node, and every replica's link to its primary is up. The cluster is built by
hand rather than by ``redis-cli --cluster create``: slots are assigned with
``CLUSTER ADDSLOTSRANGE``, nodes joined with ``CLUSTER MEET`` naming the explicit bus port
(each node runs with its own free ``--cluster-port``: the default, port + 10000, overflows for
high ports), replicas attached with ``CLUSTER REPLICATE``; the i-th primary's replicas are
therefore known in advance and no anti-affinity heuristic moves them.

:meth:`LocalRedisCluster.add_node` starts one more empty node and joins it (a primary without
slots, or a replica of a given primary); :meth:`LocalRedisCluster.wait_until_healthy` waits for
a cluster whose topology changed to settle. Faults (SIGKILL of a primary, slot migration,
removing a node) are tests' business: tests/support/redis_cluster.py.

Nothing here imports tests/; ``./herald cluster up`` and the tests both start clusters with it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

SLOTS = 16384
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 5.0


class ClusterLaunchError(RuntimeError):
    """redis-server is missing, a node did not start, or the cluster did not settle."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just gave out on *host* (free unless someone races for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.05
) -> None:
    """Poll *condition* until it holds; raise :class:`ClusterLaunchError` naming *what*."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if condition():
                return
        if time.monotonic() >= deadline:
            raise ClusterLaunchError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(interval_s)


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES`` as one node sees it."""

    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    link_connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags

    @property
    def handshaking(self) -> bool:
        return "handshake" in self.flags or "noaddr" in self.flags


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """``CLUSTER NODES`` text into :class:`NodeView` rows (importing/migrating marks skipped)."""
    views: list[NodeView] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0].split(",", 1)[0]
        host, _, port = address.rpartition(":")
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        views.append(
            NodeView(
                node_id=fields[0],
                host=host,
                port=int(port) if port else 0,
                flags=frozenset(fields[2].split(",")),
                primary_id=None if fields[3] == "-" else fields[3],
                link_connected=fields[7] == "connected",
                slots=tuple(slots),
            )
        )
    return views


class LocalRedisNode:
    """One cluster-enabled redis-server process on a fixed port and bus port."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        node_timeout_ms: int = 5000,
        extra_args: Sequence[str] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ClusterLaunchError(
                "redis-server is not on PATH; install it (apt-get install redis-server)"
            )
        self._binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port(host)
        self.cluster_port = free_port(host)
        self._node_timeout_ms = node_timeout_ms
        self._extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._node_id: str | None = None

    def __repr__(self) -> str:
        return f"LocalRedisNode({self.host}:{self.port}, pid={self.pid})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def node_id(self) -> str:
        """The node's cluster id (``CLUSTER MYID``), read once while it runs."""
        if self._node_id is None:
            self._node_id = str(self.command("CLUSTER", "MYID"))
        return self._node_id

    def start(self) -> None:
        """Start the process (fresh ``nodes.conf``); return once it answers PING."""
        if self.running:
            return
        (self.dir / "nodes.conf").unlink(missing_ok=True)
        log = self.dir / "redis.log"
        self._process = subprocess.Popen(  # noqa: S603 - redis-server on PATH, our arguments
            [
                self._binary,
                "--port", str(self.port),
                "--bind", self.host,
                "--dir", str(self.dir),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--logfile", str(log),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.cluster_port),
                "--cluster-node-timeout", str(self._node_timeout_ms),
                # A replica whose primary died long ago still takes over: availability first,
                # what the replica may have missed is the delivery contract's business.
                "--cluster-replica-validity-factor", "0",
                *self._extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        process = self._process
        while time.monotonic() < deadline and process.poll() is None:
            if self._answers_ping():
                return
            time.sleep(0.01)
        self.kill()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise ClusterLaunchError(f"redis-server did not start on port {self.port}:\n{tail}")

    def _answers_ping(self) -> bool:
        try:
            return bool(self.command("PING"))
        except (redis.RedisError, OSError):
            return False

    def client(self) -> redis.Redis:
        """A new synchronous client of this node alone (strings decoded); close it."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            decode_responses=True,
        )

    def command(self, *args: str | int | bytes) -> object:
        """One command on a fresh connection (set-up, not a hot path)."""
        with self.client() as client:
            return client.execute_command(*args)

    def cluster_nodes(self) -> list[NodeView]:
        """``CLUSTER NODES`` as this node sees it."""
        with self.client() as client:
            connection = client.connection_pool.get_connection()
            try:
                connection.send_command("CLUSTER", "NODES")
                reply = connection.read_response()
            finally:
                client.connection_pool.release(connection)
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        return parse_cluster_nodes(text)

    def cluster_info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict of strings."""
        with self.client() as client:
            connection = client.connection_pool.get_connection()
            try:
                connection.send_command("CLUSTER", "INFO")
                reply = connection.read_response()
            finally:
                client.connection_pool.release(connection)
        text = reply.decode() if isinstance(reply, bytes) else str(reply)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def kill(self) -> None:
        """SIGKILL the process (a crash; nothing saved) and reap it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL is not ignorable
            self._process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None

    def stop(self) -> None:
        """Shut down cleanly (``SHUTDOWN NOSAVE``), killing it if it lingers."""
        if self.running:
            with contextlib.suppress(redis.RedisError, OSError):
                self.command("SHUTDOWN", "NOSAVE")
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=STOP_TIMEOUT_S)
        self.kill()


class LocalRedisCluster:
    """Primaries and their replicas as local processes; see the module docstring."""

    @classmethod
    def launch(
        cls,
        workdir: Path,
        *,
        primaries: int = 3,
        replicas: int = 0,
        host: str = "127.0.0.1",
        node_timeout_ms: int = 5000,
        extra_args: Sequence[str] = (),
    ) -> LocalRedisCluster:
        """A started, settled cluster; every process is killed if the start fails."""
        cluster = cls(workdir, host=host, node_timeout_ms=node_timeout_ms, extra_args=extra_args)
        try:
            cluster._create(primaries, replicas)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        node_timeout_ms: int = 5000,
        extra_args: Sequence[str] = (),
    ) -> None:
        if node_timeout_ms <= 0:
            raise ValueError(f"node_timeout_ms must be positive, not {node_timeout_ms}")
        self.dir = workdir
        self.host = host
        self.node_timeout_ms = node_timeout_ms
        self._extra_args = tuple(extra_args)
        self.nodes: list[LocalRedisNode] = []
        """Every node started, in start order (dead ones included until removed)."""
        self._created = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- addresses -------------------------------------------------------------------------

    @property
    def live_nodes(self) -> list[LocalRedisNode]:
        return [node for node in self.nodes if node.running]

    @property
    def _seed(self) -> LocalRedisNode:
        live = self.live_nodes
        if not live:
            raise ClusterLaunchError("no node of the cluster is running")
        return live[0]

    @property
    def url(self) -> str:
        """The Herald URL: one running seed node; the rest is discovered."""
        return f"redis+cluster://{self._seed.address}"

    @property
    def seed_url(self) -> str:
        """A plain ``redis://`` URL of one running node, as redis-py's cluster client takes."""
        return f"redis://{self._seed.address}"

    def node_at(self, port: int) -> LocalRedisNode:
        return next(node for node in self.nodes if node.port == port)

    def node_by_id(self, node_id: str) -> LocalRedisNode:
        return next(node for node in self.live_nodes if node.node_id == node_id)

    # -- topology ----------------------------------------------------------------------------

    def topology(self) -> list[NodeView]:
        """``CLUSTER NODES`` as the first running node sees it."""
        return self._seed.cluster_nodes()

    def primaries(self) -> list[LocalRedisNode]:
        """Running nodes that are primaries now (with or without slots)."""
        ids = {view.node_id for view in self.topology() if view.is_primary and not view.failed}
        return [node for node in self.live_nodes if node.node_id in ids]

    def replicas_of(self, primary: LocalRedisNode) -> list[LocalRedisNode]:
        ids = {view.node_id for view in self.topology() if view.primary_id == primary.node_id}
        return [node for node in self.live_nodes if node.node_id in ids]

    def node_of_slot(self, slot: int) -> LocalRedisNode:
        """The running node that owns *slot* now (as the first running node sees it)."""
        for view in self.topology():
            if view.is_primary and not view.failed:
                for start, end in view.slots:
                    if start <= slot <= end:
                        return self.node_at(view.port)
        raise LookupError(f"no running node owns slot {slot}")

    # -- start and grow ----------------------------------------------------------------------

    def _start_node(self) -> LocalRedisNode:
        """One more node on free ports, retrying when a port was taken meanwhile."""
        for attempt in range(3):
            node = LocalRedisNode(
                self.dir / f"node{self._created}",
                host=self.host,
                node_timeout_ms=self.node_timeout_ms,
                extra_args=self._extra_args,
            )
            self._created += 1
            self.nodes.append(node)
            try:
                node.start()
            except ClusterLaunchError:
                self.nodes.remove(node)
                if attempt == 2:
                    raise
            else:
                return node
        raise AssertionError("unreachable")

    def _create(self, primaries: int, replicas: int) -> None:
        if primaries < 1 or replicas < 0:
            raise ValueError(f"need primaries >= 1 and replicas >= 0, not {primaries}/{replicas}")
        heads = [self._start_node() for _ in range(primaries)]
        followers = [[self._start_node() for _ in range(replicas)] for _ in heads]
        for index, node in enumerate(heads):
            start = index * SLOTS // primaries
            end = (index + 1) * SLOTS // primaries - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", start, end)
            # Distinct epochs, as redis-cli sets them: no collision to resolve at start.
            node.command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        for node in self.nodes[1:]:
            self._meet(node)
        self._wait_all_known()
        for head, group in zip(heads, followers, strict=True):
            for replica in group:
                replica.command("CLUSTER", "REPLICATE", head.node_id)
        self.wait_until_healthy()

    def _meet(self, node: LocalRedisNode) -> None:
        self.nodes[0].command("CLUSTER", "MEET", node.host, node.port, node.cluster_port)

    def _wait_all_known(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        ids = {node.node_id for node in self.live_nodes}

        def everyone_knows_everyone() -> bool:
            for node in self.live_nodes:
                seen = {v.node_id for v in node.cluster_nodes() if not v.handshaking}
                if not ids <= seen:
                    return False
            return True

        wait_for(everyone_knows_everyone, timeout_s=timeout_s, what="every node knowing all")

    def add_node(self, *, replica_of: LocalRedisNode | None = None) -> LocalRedisNode:
        """Start one more node and join it: an empty primary, or a replica of *replica_of*.

        Returns once every running node knows it (and, for a replica, once it is linked).
        """
        node = self._start_node()
        try:
            self._meet(node)
            self._wait_all_known()
            if replica_of is not None:
                node.command("CLUSTER", "REPLICATE", replica_of.node_id)
            self.wait_until_healthy()
        except BaseException:
            node.kill()
            self.nodes.remove(node)
            raise
        return node

    # -- health ------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Every running node: ``cluster_state:ok``, same view of who is alive, and every
        replica linked to its primary."""
        live = self.live_nodes
        live_ids = {node.node_id for node in live}
        roles: dict[str, str | None] | None = None
        for node in live:
            if node.cluster_info().get("cluster_state") != "ok":
                return False
            views = node.cluster_nodes()
            seen = {view.node_id: view for view in views}
            if not live_ids <= seen.keys():
                return False
            for view in views:
                alive = view.node_id in live_ids
                if alive and (view.failed or view.handshaking):
                    return False
            # Every node agrees on who replicates whom (a primary's vote needs it).
            seen_roles = {v.node_id: v.primary_id for v in views if v.node_id in live_ids}
            if roles is not None and seen_roles != roles:
                return False
            roles = seen_roles
            me = next(view for view in views if "myself" in view.flags)
            if not me.is_primary and not self._replica_linked(node):
                return False
        return True

    @staticmethod
    def _replica_linked(node: LocalRedisNode) -> bool:
        with node.client() as client:
            info = client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def wait_until_healthy(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once :meth:`healthy` holds; raise :class:`ClusterLaunchError` otherwise."""
        wait_for(self.healthy, timeout_s=timeout_s, what="cluster_state:ok on every node")

    def forget(self, node: LocalRedisNode) -> None:
        """Stop *node* and make every other running node forget it (it must own no slots)."""
        node_id = node.node_id
        node.stop()
        self.nodes.remove(node)
        self.forget_id(node_id)

    def forget_id(self, node_id: str) -> None:
        """``CLUSTER FORGET`` *node_id* on every running node that still lists it."""

        def forgotten() -> bool:
            done = True
            for other in self.live_nodes:
                if any(view.node_id == node_id for view in other.cluster_nodes()):
                    done = False
                    # FORGET fails on the forgotten node's own replicas; they move on when
                    # the forgotten node leaves their tables.
                    with contextlib.suppress(redis.ResponseError):
                        other.command("CLUSTER", "FORGET", node_id)
            return done

        wait_for(forgotten, timeout_s=READY_TIMEOUT_S, what=f"every node forgetting {node_id}")

    # -- stop --------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process (safe after a half-failed start, and twice)."""
        for node in self.nodes:
            node.kill()

    def pids(self) -> Iterable[int]:
        return [pid for node in self.nodes if (pid := node.pid) is not None]
