"""A durable publish (``Publisher(durable_replicas=N)``): Redis WAIT after the publish script.

Against a real primary and a replica (``redis-server --replicaof``). The shortfall case stops
the replica with SIGSTOP (continued in every case before teardown), so WAIT times out on a
short bound; nothing here asserts on timing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_contract.envelope import StreamPosition
from herald_contract.errors import PublishFailed
from herald_contract.keys import KeyLayout
from publisher.publish import Publisher
from tests.support.redis_sentinel import SentinelGroup
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.redis

CHANNEL = "question:42"
KEYS = KeyLayout()
LINK_UP_TIMEOUT_S = 20.0
SLOW_ACK_S = 15.0


def link_up(replica: RedisServer) -> bool:
    info = replica.client().info("replication")
    return info.get("master_link_status") == "up"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and one replica of it; both stopped at teardown."""
    # No 5 s wait for more replicas before the first full sync (the default delay).
    primary = RedisServer.launch(
        tmp_path / "primary", extra_args=["--repl-diskless-sync-delay", "0"]
    )
    replica: RedisServer | None = None
    try:
        replica = RedisServer.launch(
            tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]
        )
        yield primary, replica
    finally:
        if replica is not None:
            if replica.pid is not None:
                os.kill(replica.pid, signal.SIGCONT)
            replica.close()
        primary.close()


def durable_publisher(primary: RedisServer) -> Publisher:
    """A durable publisher whose WAIT succeeds as soon as the replica acknowledges (a generous
    bound for a loaded machine; WAIT returns at the acknowledgement, not at the bound)."""
    return Publisher(
        primary.url,
        durable_replicas=1,
        durable_timeout_s=SLOW_ACK_S,
        socket_timeout_s=2 * SLOW_ACK_S,
    )


def sentinel_durable_publisher(group: SentinelGroup, timeout_s: float = SLOW_ACK_S) -> Publisher:
    return Publisher(
        group.url, durable_replicas=1, durable_timeout_s=timeout_s, socket_timeout_s=2 * SLOW_ACK_S
    )


async def wait_link_up(replica: RedisServer) -> None:
    await eventually(lambda: link_up(replica), timeout_s=LINK_UP_TIMEOUT_S)


async def test_a_durable_publish_is_on_the_replica_when_it_returns(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    await wait_link_up(replica)
    async with durable_publisher(primary) as publisher:
        first = await publisher.publish(CHANNEL, {"n": 1}, event_id="vote:1")
        second = await publisher.publish(CHANNEL, {"n": 2})
    assert (first.position.offset, second.position.offset) == (1, 2)
    # WAIT returned 1: the replica has processed both writes, so it reads them at once.
    stored = replica.client().xrange(KEYS.history(CHANNEL))
    assert [entry_id for entry_id, _ in stored] == [b"1-0", b"2-0"]
    assert replica.client().hget(KEYS.meta(CHANNEL), "top") == b"2"


async def test_too_few_replicas_raise_publish_failed_and_a_retry_is_a_duplicate(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    await wait_link_up(replica)
    assert replica.pid is not None
    async with Publisher(primary.url, durable_replicas=1, durable_timeout_s=0.2) as publisher:
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            with pytest.raises(PublishFailed, match="only 0 of 1 replicas") as failed:
                await publisher.publish(CHANNEL, {"n": 1}, event_id="vote:7")
            assert "retry with the same event id" in str(failed.value)
            # The shortfall does not undo the publication: the primary has it.
            assert primary.client().hget(KEYS.meta(CHANNEL), "top") == b"1"
        finally:
            os.kill(replica.pid, signal.SIGCONT)
    async with durable_publisher(primary) as publisher:
        retried = await publisher.publish(CHANNEL, {"n": 1}, event_id="vote:7")
    assert retried.duplicate
    assert retried.position.offset == 1
    assert replica.client().hget(KEYS.meta(CHANNEL), "top") == b"1"


async def test_a_duplicate_waits_for_the_first_publication_to_reach_the_replica(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    # The retry runs on a fresh connection that never wrote: its WAIT must still cover the
    # first publication, which the stopped replica has not acknowledged.
    primary, replica = pair
    await wait_link_up(replica)
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        async with Publisher(primary.url) as plain:
            await plain.publish(CHANNEL, 1, event_id="vote:8")
        async with Publisher(primary.url, durable_replicas=1, durable_timeout_s=0.2) as durable:
            with pytest.raises(PublishFailed, match="only 0 of 1 replicas"):
                await durable.publish(CHANNEL, 1, event_id="vote:8")
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    async with durable_publisher(primary) as durable:
        again = await durable.publish(CHANNEL, 1, event_id="vote:8")
    assert again.duplicate
    assert replica.client().exists(KEYS.event_prefix(CHANNEL) + "vote:8")
    # The expiry was written again unchanged, not extended.
    assert 0 < primary.client().pttl(KEYS.meta(CHANNEL)) <= 30 * 86400 * 1000


async def test_a_durable_publication_survives_the_primary_s_death(tmp_path: Path) -> None:
    # Through Sentinel: once a durable publish returned, SIGKILL of the primary loses nothing;
    # the promoted replica has the publication, its event id and the offset counter.
    with SentinelGroup.launch(tmp_path) as group:
        async with sentinel_durable_publisher(group) as durable:
            first = await durable.publish(CHANNEL, "before", event_id="vote:1")
        new = group.kill_primary()
        promoted = group.server(new).client()
        assert promoted.hget(KEYS.meta(CHANNEL), "top") == b"1"
        # The promoted primary has no replica left: a durable publish says so. (A fresh
        # publisher for its shorter WAIT; a pooled connection to the killed primary would be
        # replaced before use, test_sentinel.py.)
        async with sentinel_durable_publisher(group, timeout_s=0.2) as durable:
            with pytest.raises(PublishFailed, match="only 0 of 1 replicas"):
                await durable.publish(CHANNEL, "after", event_id="vote:2")
        async with Publisher(group.url) as plain:
            retried = await plain.publish(CHANNEL, "before", event_id="vote:1")
            after = await plain.publish(CHANNEL, "after", event_id="vote:2")
    # The promoted replica is another writer (docs/protocol.md, "After a Redis failover"): its
    # first write started a new epoch whose offsets go on, and the repeat of vote:1, made in
    # the old epoch (whose readers are told to reload), is published again in the new one.
    assert after.duplicate  # made on the new primary before the shortfall was reported
    assert after.position.offset == 2
    assert after.position.epoch != first.position.epoch
    assert not retried.duplicate
    assert retried.position == StreamPosition(after.position.epoch, 3)


async def test_asking_for_more_replicas_than_exist_fails_with_the_count(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    await wait_link_up(replica)
    async with Publisher(primary.url, durable_replicas=2, durable_timeout_s=0.1) as publisher:
        with pytest.raises(PublishFailed, match=r"only [01] of 2 replicas"):
            await publisher.publish(CHANNEL, "x")


async def test_a_durable_publish_reloads_a_flushed_script(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    await wait_link_up(replica)
    async with durable_publisher(primary) as publisher:
        await publisher.publish(CHANNEL, 1)
        primary.client().script_flush()
        result = await publisher.publish(CHANNEL, 2)
    assert result.position.offset == 2
    assert replica.client().hget(KEYS.meta(CHANNEL), "top") == b"2"


async def test_a_plain_publisher_sends_no_wait(redis_server: RedisServer) -> None:
    async with Publisher(redis_server.url) as publisher:
        await publisher.publish(CHANNEL, 1)
    assert "cmdstat_wait" not in redis_server.client().info("commandstats")


async def test_an_unreachable_redis_is_publish_failed(tmp_path: Path) -> None:
    server = RedisServer.launch(tmp_path)
    url = server.url
    server.close()
    async with Publisher(url, durable_replicas=1, socket_timeout_s=2.0) as publisher:
        with pytest.raises(PublishFailed):
            await publisher.publish(CHANNEL, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"durable_replicas": -1}, "at least 0"),
        ({"durable_replicas": 1, "durable_timeout_s": 0.0}, "durable_timeout_s"),
        ({"durable_replicas": 1, "durable_timeout_s": 5.0, "socket_timeout_s": 5.0}, "below"),
    ],
)
def test_bad_durability_settings_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Publisher("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]


def test_a_cluster_url_has_no_durable_publish() -> None:
    with pytest.raises(ValueError, match="cluster"):
        Publisher("redis+cluster://127.0.0.1:1", durable_replicas=1)
