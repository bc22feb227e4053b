"""The scripts after a change of Redis primary (lua/publish.lua, lua/history.lua;
docs/protocol.md, "After a Redis failover"): a primary that did not write a channel last
starts a new epoch whose offsets go on from its own top, so no (epoch, offset) ever names two
publications, and every reader positioned in the old epoch is told its recovery failed.

A failover is played with two real redis-servers: a replica of the primary is promoted with
``REPLICAOF NO ONE`` (Redis gives it a new replication id, as Sentinel's and the cluster's
promotions do); publications made on the old primary after that are the ones an asynchronous
replica would have lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from herald_contract.envelope import StreamPosition, decode_envelope
from herald_contract.history import NOTHING_PUBLISHED
from herald_contract.redis_bus import RedisBus
from publisher.publish import Publisher
from tests.herald_contract.bus_support import KEYS, Q1, Recorder
from tests.support.redis_server import RedisServer


@pytest.fixture
def replica(tmp_path: Path, redis_server: RedisServer) -> Iterator[RedisServer]:
    """A second redis-server replicating the ``redis_server`` fixture."""
    server = RedisServer.launch(tmp_path / "replica")
    try:
        server.client().replicaof("127.0.0.1", redis_server.port)
        yield server
    finally:
        server.close()


@pytest.fixture
async def reader(replica: RedisServer) -> AsyncIterator[RedisBus]:
    """A bus on the replica, for reading its history once it is promoted."""
    bus = RedisBus(replica.url, keys=KEYS)
    await bus.start(Recorder())
    yield bus
    await bus.close()


def promote(replica: RedisServer, primary: RedisServer) -> None:
    """Wait until *replica* has everything *primary* wrote, then make it a primary."""
    primary.client().wait(1, 5000)
    replica.client().replicaof("NO", "ONE")


async def publish_many(url: str, count: int) -> list[StreamPosition]:
    async with Publisher(url, prefix="test") as publisher:
        return [(await publisher.publish(Q1, f"#{n}")).position for n in range(count)]


async def test_a_promoted_replica_starts_a_new_epoch_that_continues_the_offsets(
    redis_server: RedisServer, replica: RedisServer, reader: RedisBus
) -> None:
    before = await publish_many(redis_server.url, 3)
    promote(replica, redis_server)
    (after,) = await publish_many(replica.url, 1)
    assert after.epoch != before[0].epoch
    assert after.offset == 4
    for since in before:
        assert not (await reader.history(Q1, since, 100)).complete
    recovered = await reader.history(Q1, StreamPosition(after.epoch, 3), 100)
    assert recovered.complete
    assert [decode_envelope(raw).offset for raw in recovered.publications] == [4]


async def test_a_history_read_on_a_promoted_replica_starts_the_new_epoch_itself(
    redis_server: RedisServer, replica: RedisServer, reader: RedisBus
) -> None:
    before = await publish_many(redis_server.url, 2)
    promote(replica, redis_server)
    read = await reader.history(Q1, before[-1], 100)
    assert not read.complete
    assert read.position.epoch != before[-1].epoch
    assert read.position.offset == 2
    (after,) = await publish_many(replica.url, 1)
    assert after == StreamPosition(read.position.epoch, 3)


async def test_a_position_read_on_a_promoted_replica_writes_nothing_and_shows_the_old_epoch(
    redis_server: RedisServer, replica: RedisServer, reader: RedisBus
) -> None:
    before = await publish_many(redis_server.url, 2)
    promote(replica, redis_server)
    # A position check reads only: the new epoch is started by the first history read.
    assert await reader.positions([Q1]) == [before[-1]]
    read = await reader.history(Q1, None, 0)
    assert read.position.epoch != before[-1].epoch
    assert await reader.positions([Q1]) == [read.position]


async def test_offsets_the_old_primary_gave_after_the_promotion_are_never_reused(
    redis_server: RedisServer, replica: RedisServer, reader: RedisBus
) -> None:
    kept = await publish_many(redis_server.url, 2)
    promote(replica, redis_server)
    lost = await publish_many(redis_server.url, 2)  # acknowledged, never replicated
    taken_over = await publish_many(replica.url, 2)
    assert [p.offset for p in lost] == [3, 4]
    assert [p.offset for p in taken_over] == [3, 4]
    assert {p.epoch for p in taken_over}.isdisjoint({p.epoch for p in lost})
    # Every reader of the old epoch is told: one that holds a lost publication, and one that
    # does not know that the old primary acknowledged publications it will never get.
    for since in (*kept, *lost):
        assert not (await reader.history(Q1, since, 100)).complete


async def test_a_retried_event_the_new_primary_has_is_published_again_in_its_epoch(
    redis_server: RedisServer, replica: RedisServer
) -> None:
    async with Publisher(redis_server.url, prefix="test") as publisher:
        first = await publisher.publish(Q1, "once", event_id="ev-1")
    promote(replica, redis_server)
    async with Publisher(replica.url, prefix="test") as publisher:
        again = await publisher.publish(Q1, "once", event_id="ev-1")
        repeat = await publisher.publish(Q1, "once", event_id="ev-1")
    # Readers of the old epoch are told their recovery failed; in the new one it comes once.
    assert not again.duplicate
    assert again.position == StreamPosition(again.position.epoch, 2)
    assert again.position.epoch != first.position.epoch
    assert repeat.duplicate
    assert repeat.position == again.position


async def test_a_primary_that_keeps_writing_keeps_its_epoch(redis_server: RedisServer) -> None:
    positions = await publish_many(redis_server.url, 3)
    more = await publish_many(redis_server.url, 2)
    assert {p.epoch for p in positions + more} == {positions[0].epoch}
    assert [p.offset for p in positions + more] == [1, 2, 3, 4, 5]


async def test_a_channel_first_read_then_published_is_recovered_from_the_read(
    redis_server: RedisServer,
) -> None:
    bus = RedisBus(redis_server.url, keys=KEYS)
    await bus.start(Recorder())
    try:
        position = (await bus.history(Q1, None, 0)).position
        (published,) = await publish_many(redis_server.url, 1)
        recovered = await bus.history(Q1, position, 100)
    finally:
        await bus.close()
    assert position == NOTHING_PUBLISHED
    assert published == StreamPosition(published.epoch, 1)
    assert recovered.complete
    assert [decode_envelope(raw).offset for raw in recovered.publications] == [1]
