"""A real Redis Cluster of N primaries (no replicas) on free loopback ports, for tests.

    cluster = RedisCluster.launch(tmp_path, primaries=3)   # returns once cluster_state:ok
    cluster.url                                            # redis+cluster://127.0.0.1:<port>
    cluster.client()                                       # a synchronous cluster client
    cluster.close()                                        # every server killed, whatever happened

Each node is a :class:`tests.support.redis_server.RedisServer` started with
``--cluster-enabled yes`` in its own directory (so its ``nodes.conf`` is fresh); the slots are
shared out by ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster as SyncRedisCluster

from tests.support.redis_server import RedisServer, RedisServerError, free_port

READY_TIMEOUT_S = 20.0


class RedisClusterTestbed:
    """N cluster-enabled redis-servers joined into one cluster; see the module docstring."""

    @classmethod
    def launch(cls, workdir: Path, *, primaries: int = 3) -> RedisClusterTestbed:
        cluster = cls(workdir, primaries=primaries)
        try:
            cluster.start()
        except BaseException:
            cluster.close()
            raise
        return cluster

    def __init__(self, workdir: Path, *, primaries: int = 3) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RedisServerError(
                "redis-cli is not on PATH; install it (apt-get install redis-tools)"
            )
        self._cli = binary
        self.dir = workdir
        self._primaries = primaries
        self.nodes: list[RedisServer] = []
        self._clients: list[SyncRedisCluster] = []

    @property
    def url(self) -> str:
        """The bus URL: one seed node; the rest is discovered."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def seed_url(self) -> str:
        """A plain redis:// URL of one node, as redis-py's cluster client takes it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        for index in range(self._primaries):
            self.nodes.append(
                RedisServer.launch(
                    self.dir / f"node{index}",
                    # An explicit bus port: the default (port + 10000) overflows for high ports.
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        str(free_port()),
                        "--cluster-node-timeout",
                        "5000",
                    ),
                )
            )
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=READY_TIMEOUT_S,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        """Return once every node says cluster_state:ok and knows every primary."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(self._node_ready(node) for node in self.nodes):
                return
            time.sleep(0.05)
        raise RedisServerError(f"the cluster did not become ready in {READY_TIMEOUT_S} s")

    def _node_ready(self, node: RedisServer) -> bool:
        with redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2.0) as client:
            # redis-py parses both replies into dicts.
            info: dict[str, str] = client.cluster("INFO")
            if info.get("cluster_state") != "ok":
                return False
            known: dict[str, dict[str, object]] = client.cluster("NODES")
            primaries = [peer for peer in known.values() if "master" in str(peer["flags"])]
            return len(primaries) == self._primaries

    def client(self) -> SyncRedisCluster:
        """A synchronous cluster client for set-up and faults; closed by :meth:`close`."""
        client = SyncRedisCluster.from_url(self.seed_url, socket_timeout=5.0)
        self._clients.append(client)
        return client

    def flushall(self) -> None:
        """Empty every primary (between tests sharing the cluster)."""
        for node in self.nodes:
            with redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5.0) as client:
                client.flushall()

    def node_of_slot(self, slot: int) -> RedisServer:
        """The node that owns *slot* now."""
        with redis.Redis(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=5.0) as client:
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no node owns slot {slot}")

    def close(self) -> None:
        """Kill every server and close every client handed out (teardown)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        for node in self.nodes:
            node.close()


def _node_id(port: int) -> str:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5.0) as client:
        reply = client.execute_command("CLUSTER", "MYID")
        return reply.decode() if isinstance(reply, bytes) else str(reply)


def migrate_slot(cluster: RedisClusterTestbed, slot: int, to: RedisServer) -> None:
    """Move *slot* and its keys to node *to*, as ``redis-cli --cluster reshard`` does.

    IMPORTING on the target, MIGRATING on the source, MIGRATE of every key, then SETSLOT NODE
    on every node (the target first). The source drops the slot's shard channels, pushing
    ``sunsubscribe`` to their subscribers.
    """
    source = cluster.node_of_slot(slot)
    if source.port == to.port:
        raise ValueError(f"slot {slot} is already on {to.port}")
    source_id, target_id = _node_id(source.port), _node_id(to.port)
    with (
        redis.Redis(host="127.0.0.1", port=source.port, socket_timeout=5.0) as src,
        redis.Redis(host="127.0.0.1", port=to.port, socket_timeout=5.0) as dst,
    ):
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    for node in cluster.nodes:
        if node.port not in (source.port, to.port):
            with redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5.0) as other:
                other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
