"""The Redis Cluster bus (herald_contract/redis_cluster_bus.py) against a real 3-primary cluster.

What every bus promises is in test_bus_contract.py; this module shows what only the cluster
shows: where a channel's keys land and that the bus follows the cluster.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.cluster import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from herald_contract.backoff import Backoff
from herald_contract.cluster_client import GuardedConnection, cluster_command_client
from herald_contract.cluster_pubsub import Address, ClusterPubSub, ConnectOptions, SlotMoved
from herald_contract.cluster_urls import parse_cluster_url
from herald_contract.envelope import StreamPosition, decode_envelope
from herald_contract.errors import BusUnavailable
from herald_contract.lifecycle import BusLifecycle, BusState
from herald_contract.redis_cluster_bus import RedisClusterBus, shard_loss_reason
from herald_contract.redis_urls import check_redis_url
from publisher.publish import Publisher
from tests.herald_contract.bus_support import KEYS, Q1, Observer, Recorder, packed
from tests.support.redis_cluster import RedisClusterTestbed, migrate_slot
from tests.support.redis_server import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.redis

CHANNELS = [f"question:{n}" for n in range(50)] + ["questions:new", "inbox:user:7"]


def test_every_key_of_a_channel_lands_in_one_slot() -> None:
    for channel in CHANNELS:
        names = [
            KEYS.history(channel),
            KEYS.meta(channel),
            KEYS.event_prefix(channel) + "event-1",
            KEYS.live(channel),
        ]
        assert len({key_slot(name.encode()) for name in names}) == 1, channel


def test_the_test_cluster_shares_its_slots_among_three_primaries(
    redis_cluster: RedisClusterTestbed,
) -> None:
    owners = {redis_cluster.node_of_slot(key_slot(KEYS.meta(c).encode())).port for c in CHANNELS}
    assert len(owners) == 3
    client = redis_cluster.client()
    client.set(KEYS.meta(CHANNELS[0]), b"x")
    assert client.get(KEYS.meta(CHANNELS[0])) == b"x"
    redis_cluster.flushall()
    assert client.get(KEYS.meta(CHANNELS[0])) is None


# -- the URL -----------------------------------------------------------------------------------


def test_a_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    url = parse_cluster_url("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2/")
    assert url.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379))
    assert (url.username, url.password) == ("app", "s3cret")
    assert "s3cret" not in repr(url)


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://h:99999", "redis+cluster://h:7000/0"]
)
def test_a_malformed_cluster_url_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(ValueError, match="redis\\+cluster") as caught:
        check_redis_url(url)
    assert "\n" not in str(caught.value)


# -- against the cluster -----------------------------------------------------------------------


async def started_bus(
    cluster: RedisClusterTestbed, observer: Observer | None = None
) -> tuple[RedisClusterBus, Recorder]:
    listener = Recorder()
    bus = RedisClusterBus(
        cluster.url, keys=KEYS, backoff=Backoff(base_s=0.01, cap_s=0.2), observer=observer
    )
    await bus.start(listener)
    return bus, listener


def channels_on(cluster: RedisClusterTestbed, count: int) -> list[str]:
    """*count* channels whose slots belong to *count* different primaries."""
    found: dict[int, str] = {}
    for channel in CHANNELS:
        port = cluster.node_of_slot(key_slot(KEYS.live(channel).encode())).port
        found.setdefault(port, channel)
    assert len(found) >= count
    return list(found.values())[:count]


async def test_the_bus_holds_one_pubsub_connection_per_primary_it_needs(
    redis_cluster: RedisClusterTestbed,
) -> None:
    redis_cluster.flushall()
    bus, listener = await started_bus(redis_cluster)
    try:
        assert bus.shard_connections == 0
        first, second, third = channels_on(redis_cluster, 3)
        await bus.subscribe(first)
        assert bus.shard_connections == 1
        await bus.subscribe(second)
        await bus.subscribe(third)
        assert bus.shard_connections == 3
        for channel in (first, second, third):
            await bus.publish(channel, packed(channel))
        await eventually(lambda: len(listener.received) == 3)
        assert {name for name, _ in listener.received} == {first, second, third}
    finally:
        await bus.close()


async def test_a_publisher_on_the_cluster_url_reaches_the_bus_by_spublish(
    redis_cluster: RedisClusterTestbed,
) -> None:
    redis_cluster.flushall()
    bus, listener = await started_bus(redis_cluster)
    try:
        await bus.subscribe(Q1)
        async with Publisher(redis_cluster.url, prefix=KEYS.prefix) as publisher:
            first = await publisher.publish(Q1, {"n": 1})
            again = await publisher.publish(Q1, {"n": 2}, event_id="e-1")
            assert (await publisher.publish(Q1, {"n": 2}, event_id="e-1")).duplicate
        await eventually(lambda: listener.offsets(Q1) == [1, 2])
        assert (first.position.offset, again.position.offset) == (1, 2)
    finally:
        await bus.close()


async def test_a_killed_shard_connection_is_lost_restored_and_repairable_from_history(
    redis_cluster: RedisClusterTestbed,
) -> None:
    redis_cluster.flushall()
    observer = Observer()
    bus, listener = await started_bus(redis_cluster, observer)
    try:
        await bus.subscribe(Q1)
        await bus.publish(Q1, packed(1))
        await eventually(lambda: listener.offsets(Q1) == [1])
        owner = redis_cluster.node_of_slot(key_slot(KEYS.live(Q1).encode()))
        owner.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: listener.events == ["lost", "restored"])
        # The observer: one shard connection, dropped, then reopened by the recovery.
        assert observer.shards == [0, 1, 0, 1]
        assert observer.recoveries == [("connection_lost", 1)]
        assert observer.live == [True, False, True]
        assert observer.reconnects == 1
        await bus.publish(Q1, packed(2))
        await eventually(lambda: listener.offsets(Q1) == [1, 2])
    finally:
        await bus.close()


async def test_a_migrated_slot_is_followed_and_its_channels_go_on_in_a_new_epoch(
    redis_cluster: RedisClusterTestbed,
) -> None:
    redis_cluster.flushall()
    observer = Observer()
    bus, listener = await started_bus(redis_cluster, observer)
    # A publisher whose slot map predates the move: its next publish is answered MOVED.
    publisher = Publisher(redis_cluster.url, prefix=KEYS.prefix)
    try:
        await bus.subscribe(Q1)
        await publisher.publish(Q1, 1)
        await eventually(lambda: listener.offsets(Q1) == [1])
        slot = key_slot(KEYS.live(Q1).encode())
        source = redis_cluster.node_of_slot(slot)
        target = next(node for node in redis_cluster.nodes if node.port != source.port)
        migrate_slot(redis_cluster, slot, target)
        # Redis pushes sunsubscribe to the subscriber: the bus resubscribes at the new owner.
        await eventually(lambda: listener.events == ["lost", "restored"])
        assert redis_cluster.node_of_slot(slot).port == target.port
        assert observer.recoveries == [("sunsubscribe", 1)]
        # The publisher follows MOVED; the history came along, but the new owner did not write
        # it: it cannot tell a moved channel from one a failover left behind, so the channel
        # goes on in a new epoch (docs/protocol.md, "After a Redis failover").
        await publisher.publish(Q1, 2)
        await eventually(lambda: listener.offsets(Q1) == [1, 2])
        first, second = listener.envelopes(Q1)
        assert first.epoch != second.epoch
        assert not (await bus.history(Q1, StreamPosition(first.epoch, 0), 10)).complete
        repaired = await bus.history(Q1, StreamPosition(second.epoch, 1), 10)
        assert repaired.complete
        assert [decode_envelope(raw).offset for raw in repaired.publications] == [2]
    finally:
        await publisher.close()
        await bus.close()


async def test_a_cluster_that_does_not_answer_makes_start_raise_bus_unavailable() -> None:
    bus = RedisClusterBus(f"redis+cluster://127.0.0.1:{free_port()}", keys=KEYS)
    with pytest.raises(BusUnavailable, match="Redis Cluster"):
        await bus.start(Recorder())
    await bus.close()
    assert not bus.live


async def test_every_cluster_connection_reports_a_stream_closed_under_it_as_a_connection_error(
    redis_cluster: RedisClusterTestbed,
) -> None:
    # redis-py 8.1 can close a node's connection from one task while another is about to
    # write on it (a shard failing over); the command was not sent, and the caller must see
    # a connection error (PublishFailed for a publisher), not an AttributeError on None.
    client = cluster_command_client(redis_cluster.url, socket_timeout_s=5.0)
    try:
        await client.ping(target_nodes=RedisCluster.ALL_NODES)
        nodes = client.get_nodes()
        assert len(nodes) == 3
        for node in nodes:
            connection = node.acquire_connection()
            assert isinstance(connection, GuardedConnection)
            node.release(connection)
        closed = GuardedConnection(host="127.0.0.1", port=redis_cluster.nodes[0].port)
        with pytest.raises(RedisConnectionError, match="before the command was sent"):
            await closed._send_packed_command([b"PING\r\n"])
    finally:
        await client.aclose()


# -- slot moves seen by a subscribe -------------------------------------------------------------


def slot_of(channel: str) -> int:
    return key_slot(KEYS.live(channel).encode())


def address_of(cluster: RedisClusterTestbed, channel: str) -> Address:
    """The primary that owns *channel*'s slot now."""
    owner = cluster.node_of_slot(slot_of(channel))
    return owner.node.host, owner.port


async def test_a_subscribe_refused_with_moved_is_recovered_as_a_slot_move(
    redis_cluster: RedisClusterTestbed,
) -> None:
    # The bus's slot map predates the move, so it sends SSUBSCRIBE to the old owner, which
    # answers MOVED (redis-py: a MovedError reading "<slot> <host:port>", without the code).
    redis_cluster.flushall()
    observer = Observer()
    bus, listener = await started_bus(redis_cluster, observer)
    channel = channels_on(redis_cluster, 1)[0]
    source = redis_cluster.node_of_slot(slot_of(channel))
    target = next(node for node in redis_cluster.primaries() if node.port != source.port)
    try:
        migrate_slot(redis_cluster, slot_of(channel), target)
        with pytest.raises(BusUnavailable):
            await bus.subscribe(channel)  # not subscribed: the caller is told so
        await eventually(lambda: listener.events == ["lost", "restored"])
        assert observer.recoveries == [("slot_moved", 0)]
        await bus.subscribe(channel)  # at the new owner, by the slot map read since
        assert bus.subscribed_at() == {channel: address_of(redis_cluster, channel)}
    finally:
        await bus.close()
        migrate_slot(redis_cluster, slot_of(channel), source)


def live_pubsub(locate: dict[str, Address], lifecycle: BusLifecycle | None = None) -> ClusterPubSub:
    """The bus's pub/sub part alone, finding each live key's primary in *locate*; its
    *lifecycle* (a new one) moved to LIVE."""
    lifecycle = lifecycle or BusLifecycle("Redis Cluster")
    lifecycle.move(BusState.LIVE, "start")
    return ClusterPubSub(
        keys=KEYS,
        lifecycle=lifecycle,
        options=ConnectOptions(None, None, ping_interval_s=5.0, socket_timeout_s=5.0),
        locate=locate.__getitem__,
        slot_of=lambda key: key_slot(key.encode()),
        on_message=lambda channel, envelope: None,
    )


async def test_a_shard_connection_still_opening_when_the_shards_are_dropped_is_not_kept(
    redis_cluster: RedisClusterTestbed,
) -> None:
    # A subscribe opening the first connection to a primary while another shard's loss drops
    # every connection (the bus then RECOVERING): the connection it opens belongs to no
    # recovery, and kept, it would be an idle extra shard connection (the gauge one too high)
    # whose reader could start a whole-bus recovery later, for no channel.
    redis_cluster.flushall()
    channel = channels_on(redis_cluster, 1)[0]
    lifecycle = BusLifecycle("Redis Cluster")
    pubsub = live_pubsub({KEYS.live(channel): address_of(redis_cluster, channel)}, lifecycle)
    try:
        subscribing = asyncio.create_task(pubsub.subscribe(channel))
        await asyncio.sleep(0)  # it is connecting now
        lifecycle.move(BusState.RECOVERING, "lose a shard of")  # as the bus does, then drops
        await pubsub.drop("a shard was lost")
        with pytest.raises(BusUnavailable):
            await subscribing
        assert pubsub.shard_count == 0
        assert pubsub.channel_count == 0
    finally:
        await pubsub.close()


async def test_a_resubscribe_cut_short_by_a_moved_slot_leaves_nothing_for_asyncio_to_log(
    redis_cluster: RedisClusterTestbed, caplog: pytest.LogCaptureFixture
) -> None:
    # A recovery's resubscribe at a slot map gone stale is answered MOVED while another
    # channel's confirmation is still due (a reshard of several slots does this). It raises for
    # the loss; the confirmations it stopped waiting for must not end in asyncio's "exception
    # was never retrieved" ERROR, logged with no context at every such recovery.
    redis_cluster.flushall()
    first, second = channels_on(redis_cluster, 2)
    locate = {KEYS.live(c): address_of(redis_cluster, c) for c in (first, second)}
    pubsub = live_pubsub(locate)
    try:
        await pubsub.subscribe(first)
        await pubsub.subscribe(second)
        await pubsub.drop("a test")
        locate[KEYS.live(second)] = locate[KEYS.live(first)]  # a stale slot map
        with pytest.raises(SlotMoved) as refused:
            await pubsub.resubscribe()
        owner = address_of(redis_cluster, second)
        assert refused.value.redirect == f"MOVED {slot_of(second)} {owner[0]}:{owner[1]}"
        assert shard_loss_reason(refused.value) == "slot_moved"
        del refused
    finally:
        await pubsub.close()
    del pubsub
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
