"""A real Redis Cluster on free loopback ports for tests, and the faults tests inflict on it.

    cluster = RedisClusterTestbed.launch(tmp_path, primaries=3, replicas=1)
    cluster.url                          # redis+cluster://127.0.0.1:<port>
    cluster.client()                     # a synchronous cluster client
    cluster.kill_primary_of_slot(slot)   # SIGKILL; returns the promoted replica's port
    cluster.swap_with_replica(primary)   # CLUSTER FAILOVER: its replica becomes the primary
    cluster.migrate_slot(slot, node)     # the slot and its keys move, as a reshard does
    node = cluster.add_primary()         # an empty primary, known to every node
    cluster.remove_node(node)            # its slots moved away, forgotten, stopped
    cluster.close()                      # every server killed, whatever happened

The processes and the building of the cluster are the product's
(:class:`launch.redis_cluster.LocalRedisCluster`, which ``./herald cluster up`` uses too); this
module adds what only tests do to a cluster: kill a primary, migrate a slot, remove a node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster as SyncRedisCluster

from launch.redis_cluster import (
    READY_TIMEOUT_S,
    LocalRedisCluster,
    LocalRedisNode,
    wait_for,
)

TEST_NODE_TIMEOUT_MS = 3000
"""Short enough for a failover in a few seconds, long enough that a loaded 2-core machine
does not time a healthy node out."""

MIGRATE_BATCH = 100

_Client = TypeVar("_Client", redis.Redis, SyncRedisCluster)
_ClientOf = Callable[[LocalRedisNode], redis.Redis]


class TestbedNode:
    """One node of the testbed: its port, process and a tracked synchronous client."""

    __test__ = False

    def __init__(self, node: LocalRedisNode, owner: RedisClusterTestbed) -> None:
        self.node = node
        self._owner = owner

    def __repr__(self) -> str:
        return f"TestbedNode({self.node.address})"

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def pid(self) -> int | None:
        return self.node.pid

    @property
    def running(self) -> bool:
        return self.node.running

    @property
    def node_id(self) -> str:
        return self.node.node_id

    def client(self) -> redis.Redis:
        """A synchronous client of this node alone; closed by the testbed's :meth:`close`."""
        return self._owner._track(
            redis.Redis(host=self.node.host, port=self.port, socket_timeout=5.0)
        )


class RedisClusterTestbed:
    """A :class:`LocalRedisCluster` with test-facing helpers; see the module docstring."""

    __test__ = False

    @classmethod
    def launch(
        cls,
        workdir: Path,
        *,
        primaries: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = TEST_NODE_TIMEOUT_MS,
    ) -> RedisClusterTestbed:
        cluster = LocalRedisCluster.launch(
            workdir, primaries=primaries, replicas=replicas, node_timeout_ms=node_timeout_ms,
            # A replica's sync starts at once, not after the default 5 s wait for others.
            extra_args=("--repl-diskless-sync-delay", "0"),
        )  # fmt: skip
        return cls(cluster)

    def __init__(self, cluster: LocalRedisCluster) -> None:
        self.cluster = cluster
        self.dir = cluster.dir
        self._wrapped: dict[int, TestbedNode] = {}
        self._clients: list[redis.Redis | SyncRedisCluster] = []
        self._dead_ids: list[str] = []

    def _track(self, client: _Client) -> _Client:
        self._clients.append(client)
        return client

    def _wrap(self, node: LocalRedisNode) -> TestbedNode:
        wrapped = self._wrapped.get(id(node))
        if wrapped is None:
            wrapped = self._wrapped[id(node)] = TestbedNode(node, self)
        return wrapped

    # -- what the existing tests use -------------------------------------------------------

    @property
    def nodes(self) -> list[TestbedNode]:
        """Every running node (primaries and replicas)."""
        return [self._wrap(node) for node in self.cluster.live_nodes]

    @property
    def url(self) -> str:
        """The bus URL: one running seed node; the rest is discovered."""
        return self.cluster.url

    @property
    def seed_url(self) -> str:
        """A plain redis:// URL of one node, as redis-py's cluster client takes it."""
        return self.cluster.seed_url

    def client(self) -> SyncRedisCluster:
        """A synchronous cluster client for set-up and faults; closed by :meth:`close`."""
        return self._track(SyncRedisCluster.from_url(self.seed_url, socket_timeout=5.0))

    def primaries(self) -> list[TestbedNode]:
        """The running primaries now (with or without slots)."""
        return [self._wrap(node) for node in self.cluster.primaries()]

    def replicas_of(self, primary: TestbedNode) -> list[TestbedNode]:
        return [self._wrap(node) for node in self.cluster.replicas_of(primary.node)]

    def flushall(self) -> None:
        """Empty every primary (between tests sharing the cluster); replicas follow."""
        for node in self.cluster.primaries():
            node.command("FLUSHALL")

    def node_of_slot(self, slot: int) -> TestbedNode:
        """The node that owns *slot* now."""
        return self._wrap(self.cluster.node_of_slot(slot))

    def slots_of(self, node: TestbedNode) -> list[int]:
        """The slots *node* owns now."""
        for view in self.cluster.topology():
            if view.node_id == node.node_id:
                return [s for start, end in view.slots for s in range(start, end + 1)]
        return []

    def wait_until_healthy(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        self.cluster.wait_until_healthy(timeout_s)

    # -- faults ------------------------------------------------------------------------------

    def kill_primary_of_slot(self, slot: int) -> int:
        """SIGKILL the primary owning *slot*; return the port of the replica promoted.

        Returns once that replica owns the slot in every running node's view and every
        running node says ``cluster_state:ok``. The dead node stays in the tables (flagged
        ``fail``) until :meth:`replace_dead_node` forgets it.
        """
        primary = self.cluster.node_of_slot(slot)
        replicas = self.cluster.replicas_of(primary)
        if not replicas:
            raise ValueError(f"the primary of slot {slot} ({primary.address}) has no replica")
        candidates = {replica.node_id for replica in replicas}
        self._dead_ids.append(primary.node_id)
        primary.kill()

        def promoted() -> bool:
            for node in self.cluster.live_nodes:
                owner = _owner_in_view(node, slot)
                if owner not in candidates:
                    return False
            return self.cluster.healthy()

        wait_for(promoted, timeout_s=READY_TIMEOUT_S, what=f"a replica taking slot {slot} over")
        return self.cluster.node_of_slot(slot).port

    def swap_with_replica(self, primary: TestbedNode) -> TestbedNode:
        """``CLUSTER FAILOVER`` on *primary*'s replica: the two swap roles, nothing lost.

        Returns the replica, once every running node sees it own *primary*'s slots and the
        cluster is healthy. The old primary drops its slots' shard channels (pushing
        ``sunsubscribe``) and, a replica now, takes SSUBSCRIBE for them again.
        """
        replica = self.replicas_of(primary)[0]
        slot = self.slots_of(primary)[0]
        _command(replica.client(), "CLUSTER", "FAILOVER")

        def swapped() -> bool:
            for node in self.cluster.live_nodes:
                if _owner_in_view(node, slot) != replica.node_id:
                    return False
            return self.cluster.healthy()

        wait_for(swapped, timeout_s=READY_TIMEOUT_S, what=f"{replica} taking slot {slot} over")
        return replica

    def replace_dead_nodes(self) -> list[TestbedNode]:
        """Forget every killed node and give each primary left without a replica a new one.

        Brings a cluster whose primary was killed back to its shape (one replica per primary
        when it had them), so the next test sharing it can kill again.
        """
        self.cluster.nodes = [node for node in self.cluster.nodes if node.running]
        while self._dead_ids:
            self.cluster.forget_id(self._dead_ids.pop())
        added = []
        for primary in self.cluster.primaries():
            if not self.cluster.replicas_of(primary):
                added.append(self._wrap(self.cluster.add_node(replica_of=primary)))
        return added

    def migrate_slot(self, slot: int, to: TestbedNode) -> None:
        """Move *slot* and its keys to primary *to*, as ``redis-cli --cluster reshard`` does.

        IMPORTING on the target, MIGRATING on the source, MIGRATE of the keys in batches of
        :data:`MIGRATE_BATCH`, then SETSLOT NODE on the target, the source and every other
        primary. The source drops the slot's shard channels, pushing ``sunsubscribe`` to their
        subscribers; a write meanwhile is answered ASK or TRYAGAIN.
        """
        self.migrate_slots([slot], to)

    def migrate_slots(self, slots: Iterable[int], to: TestbedNode) -> None:
        """:meth:`migrate_slot` for each of *slots*, on one connection per node."""
        with _node_clients() as on:
            primaries = self.cluster.primaries()
            target = to.node
            for slot in slots:
                source = self.cluster.node_of_slot(slot)
                if source.node_id == target.node_id:
                    continue
                _move_slot(slot, source, target, primaries, on)

    def half_migrate_slot(self, slot: int, to: TestbedNode) -> None:
        """Move *slot*'s keys to *to* but leave it MIGRATING/IMPORTING: the old owner answers
        ASK for them until :meth:`migrate_slot` finishes the move."""
        source = self.cluster.node_of_slot(slot)
        with _node_clients() as on:
            _move_slot(slot, source, to.node, [], on, finish=False)

    def add_primary(self) -> TestbedNode:
        """Start an empty node and join it with CLUSTER MEET; return once every node knows it.

        It owns no slot: :meth:`migrate_slots` gives it some.
        """
        return self._wrap(self.cluster.add_node())

    def remove_node(self, node: TestbedNode) -> None:
        """Move *node*'s slots to the other primaries (in turn), remove its replicas, then
        CLUSTER FORGET it on every node and stop it."""
        others = [p for p in self.primaries() if p.node_id != node.node_id]
        if not others:
            raise ValueError("cannot remove the last primary")
        slots = self.slots_of(node)
        share = -(-len(slots) // len(others))
        for index, target in enumerate(others):
            self.migrate_slots(slots[index * share : (index + 1) * share], target)
        for replica in self.replicas_of(node):
            self.cluster.forget(replica.node)
        self.cluster.forget(node.node)
        self.cluster.wait_until_healthy()

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every server and close every client handed out (teardown)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.cluster.close()


def _owner_in_view(node: LocalRedisNode, slot: int) -> str | None:
    for view in node.cluster_nodes():
        if view.is_primary and not view.failed:
            for start, end in view.slots:
                if start <= slot <= end:
                    return view.node_id
    return None


@contextlib.contextmanager
def _node_clients() -> Iterator[_ClientOf]:
    """One client per node asked for, all closed at the end."""
    with ExitStack() as stack:
        clients: dict[str, redis.Redis] = {}

        def on(node: LocalRedisNode) -> redis.Redis:
            if node.node_id not in clients:
                clients[node.node_id] = stack.enter_context(
                    redis.Redis(host=node.host, port=node.port, socket_timeout=10.0)
                )
            return clients[node.node_id]

        yield on


def _command(client: redis.Redis, *args: str | int | bytes) -> Any:
    """One command on *client* (redis-py leaves ``execute_command`` unannotated)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _move_slot(
    slot: int,
    source: LocalRedisNode,
    target: LocalRedisNode,
    primaries: Sequence[LocalRedisNode],
    on: _ClientOf,
    *,
    finish: bool = True,
) -> None:
    src, dst = on(source), on(target)
    _command(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
    _command(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
    while keys := _command(src, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH):
        _command(src, "MIGRATE", target.host, target.port, "", 0, 5000, "REPLACE", "KEYS", *keys)
    if not finish:
        return
    _command(dst, "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    for node in [source, *primaries]:
        if node.node_id != target.node_id:
            try:
                _command(on(node), "CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
            except redis.ResponseError as exc:
                # A primary that lost its last slot (to the target's new epoch, by gossip)
                # has become the target's replica (cluster-allow-replica-migration): it
                # knows already.
                if "only with masters" not in str(exc):
                    raise


def migrate_slot(cluster: RedisClusterTestbed, slot: int, to: TestbedNode) -> None:
    """:meth:`RedisClusterTestbed.migrate_slot` as a function (older tests call it so)."""
    cluster.migrate_slot(slot, to)
