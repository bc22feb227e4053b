"""A Sentinel-managed Redis (redis+sentinel:// URLs, herald_contract/redis_urls.py and
redis_pools.py): the URL rules, then the publisher and the Redis bus against a real primary,
replica and 3 sentinels, through a SENTINEL FAILOVER."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from herald_contract.backoff import Backoff
from herald_contract.config import BusSettings, SettingsError
from herald_contract.envelope import decode_envelope
from herald_contract.redis_bus import RedisBus
from herald_contract.redis_pools import connection_pool
from herald_contract.redis_urls import SentinelUrl, check_redis_url, parse_sentinel_url
from publisher.cli import main as herald_publish
from publisher.publish import Publisher
from tests.herald_contract.bus_support import KEYS, Q1, Q2, Q3, Observer, Recorder, packed
from tests.support.redis_sentinel import SentinelGroup
from tests.support.waiting import eventually

WAIT_S = 30.0
"""Bound on waits that span a failover (Sentinel itself takes a few seconds)."""

# -- the URL form ----------------------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    url = parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26380,sentinel-b/mymaster/2")
    assert url == SentinelUrl(
        (("10.0.0.1", 26380), ("sentinel-b", 26379)), "mymaster", 2, None, "s3cret"
    )
    assert parse_sentinel_url("redis+sentinel://h:1/svc").db == 0
    assert parse_sentinel_url("redis+sentinel://app:pw@h:1/svc/").username == "app"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:1", "names no service"),
        ("redis+sentinel://h:1/svc/zero", "the database 'zero' is not a number"),
        ("redis+sentinel://h:1,:2/svc", "a sentinel address is empty"),
        ("redis+sentinel://h:port/svc", "the sentinel port 'port' is not a port number"),
        ("redis+sentinel://:pw@h:1/a/b/c", "names no service"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_with_one_line_that_says_why(
    url: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        check_redis_url(url)
    assert "\n" not in str(caught.value)
    assert "pw" not in str(caught.value).replace("pw@", "")  # the password is never shown


def test_the_redis_url_setting_accepts_a_sentinel_url_and_names_the_variable_when_not() -> None:
    good = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/herald/0"
    assert BusSettings.from_env({"REDIS_URL": good}).redis_url == good
    with pytest.raises(SettingsError) as caught:
        BusSettings.from_env({"HERALD_REDIS_URL": "redis+sentinel://127.0.0.1:26379"})
    message = str(caught.value)
    assert message.startswith("HERALD_REDIS_URL: ")
    assert "names no service" in message
    assert "\n" not in message


async def test_the_url_password_and_database_go_to_the_servers_not_to_the_sentinels() -> None:
    pool = connection_pool(
        "redis+sentinel://app:s3cret@127.0.0.1:1,127.0.0.1:2/svc/3",
        blocking=True,
        socket_timeout_s=3.0,
    )
    try:
        kwargs = pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", "s3cret", 3)
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "svc"
        for sentinel in pool.sentinel_manager.sentinels:
            sentinel_kwargs = sentinel.connection_pool.connection_kwargs
            assert sentinel_kwargs.get("password") is None
            assert sentinel_kwargs["socket_timeout"] == 1.0  # a third of 3 s: 2 sentinels + 1
    finally:
        await pool.aclose()


# -- against real processes --------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """One primary, one replica, 3 sentinels for the module: starting them takes seconds."""
    with SentinelGroup.launch(tmp_path_factory.mktemp("sentinel")) as group:
        yield group


@pytest.fixture
async def bus(sentinel_group: SentinelGroup) -> AsyncIterator[tuple[RedisBus, Recorder, Observer]]:
    async with _started_bus(sentinel_group) as started:
        yield started


@asynccontextmanager
async def _started_bus(
    sentinel_group: SentinelGroup,
) -> AsyncIterator[tuple[RedisBus, Recorder, Observer]]:
    listener, observer = Recorder(), Observer()
    bus = RedisBus(
        sentinel_group.url,
        keys=KEYS,
        observer=observer,
        backoff=Backoff(base_s=0.02, cap_s=0.2),
        ping_interval_s=0.5,
    )
    await bus.start(listener)
    try:
        yield bus, listener, observer
    finally:
        await bus.close()


@pytest.mark.redis  # real redis-servers and sentinels
async def test_the_publisher_publishes_to_the_primary_the_sentinels_report(
    sentinel_group: SentinelGroup,
) -> None:
    async with Publisher(sentinel_group.url, prefix=KEYS.prefix) as publisher:
        first = await publisher.publish(Q2, {"n": 1})
        second = await publisher.publish(Q2, {"n": 2})
    assert second.position.offset == first.position.offset + 1
    primary = sentinel_group.server(sentinel_group.primary_port).client()
    assert primary.exists(KEYS.history(Q2))


@pytest.mark.redis  # real redis-servers and sentinels
def test_herald_publish_takes_a_sentinel_url(
    sentinel_group: SentinelGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [Q3, '{"n": 1}', "--redis-url", sentinel_group.url, "--prefix", KEYS.prefix]
    assert herald_publish(argv, env={}) == 0
    assert json.loads(capsys.readouterr().out)["offset"] == 1


def test_herald_publish_refuses_a_malformed_sentinel_url_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [Q3, "{}", "--redis-url", "redis+sentinel://127.0.0.1:26379"]
    assert herald_publish(argv, env={}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "names no service" in err


@pytest.mark.redis  # real redis-servers and sentinels
async def test_a_bus_on_a_sentinel_url_receives_a_publication(
    sentinel_group: SentinelGroup, bus: tuple[RedisBus, Recorder, Observer]
) -> None:
    redis_bus, listener, _ = bus
    await redis_bus.subscribe(Q1)
    async with Publisher(sentinel_group.url, prefix=KEYS.prefix) as publisher:
        sent = await publisher.publish(Q1, "hello")
    await eventually(lambda: listener.offsets(Q1) == [sent.position.offset], WAIT_S)


@pytest.mark.redis  # real redis-servers and sentinels
async def test_a_sentinel_that_never_answers_leaves_time_to_ask_the_next(
    sentinel_group: SentinelGroup,
) -> None:
    # A listening socket nobody accepts from: the kernel completes the handshake, then
    # nothing is ever answered (a blackholed sentinel).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = sentinel_group.url.replace("//", f"//127.0.0.1:{port},", 1)
        listener = Recorder()
        bus = RedisBus(url, keys=KEYS)
        await bus.start(listener)
        try:
            await bus.subscribe(Q2)
            async with Publisher(url, prefix=KEYS.prefix) as publisher:
                sent = await publisher.publish(Q2, "past a silent sentinel")
            await eventually(lambda: sent.position.offset in listener.offsets(Q2), WAIT_S)
        finally:
            await bus.close()


@pytest.mark.redis  # real redis-servers and sentinels
async def test_after_a_sentinel_failover_the_same_bus_is_restored_on_the_new_primary(
    sentinel_group: SentinelGroup, bus: tuple[RedisBus, Recorder, Observer]
) -> None:
    redis_bus, listener, observer = bus
    await redis_bus.subscribe(Q1)
    await redis_bus.publish(Q1, packed("before"))
    await eventually(lambda: len(listener.received) == 1, WAIT_S)
    old = sentinel_group.primary_port

    new = sentinel_group.failover()

    assert new != old
    await eventually(lambda: listener.events[-1:] == ["restored"], WAIT_S)
    assert listener.events[0] == "lost"
    assert observer.reconnects >= 1
    # Published through the same bus (its command client follows the failover too), and
    # through a publisher that connects afresh: both reach the bus's new subscription.
    await redis_bus.publish(Q1, packed("after, from the bus"))
    async with Publisher(sentinel_group.url, prefix=KEYS.prefix) as publisher:
        await publisher.publish(Q1, "after, from a publisher")
    await eventually(lambda: len(listener.received) == 3, WAIT_S)
    data = [decode_envelope(raw).data for _, raw in listener.received]
    assert data == ["before", "after, from the bus", "after, from a publisher"]
    assert sentinel_group.server(new).client().exists(KEYS.history(Q1))


@pytest.mark.redis  # real redis-servers and sentinels
async def test_after_the_primary_is_killed_the_bus_is_restored_on_the_promoted_replica(
    tmp_path: Path,
) -> None:
    # A group of its own: the killed primary stays dead.
    with SentinelGroup.launch(tmp_path / "sentinel") as group:
        async with _started_bus(group) as (redis_bus, listener, _):
            await redis_bus.subscribe(Q1)
            old = group.primary_port

            new = group.kill_primary()

            assert new != old
            await eventually(lambda: listener.events[-1:] == ["restored"], WAIT_S)
            assert listener.events[0] == "lost"
            async with Publisher(group.url, prefix=KEYS.prefix) as publisher:
                await publisher.publish(Q1, "after the kill")
            await redis_bus.publish(Q1, packed("after the kill, from the bus"))
            await eventually(lambda: len(listener.received) == 2, WAIT_S)
            data = [decode_envelope(raw).data for _, raw in listener.received]
            assert data == ["after the kill", "after the kill, from the bus"]


@pytest.mark.redis  # real redis-servers and sentinels
async def test_the_first_publish_after_the_primary_is_killed_succeeds_on_the_same_publisher(
    tmp_path: Path,
) -> None:
    # A group of its own: the killed primary stays dead.
    with SentinelGroup.launch(tmp_path / "sentinel") as group:
        async with Publisher(group.url, prefix=KEYS.prefix) as publisher:
            await publisher.publish(Q1, "before")  # leaves a connection to the primary pooled
            old = group.primary_port

            # kill_primary() blocks the event loop until the replica is promoted, so the
            # pooled connection's EOF is still unread: it looks alive to redis-py.
            new = group.kill_primary()

            # Without an event id a publish is never retried: this one has to go out on a
            # connection to the new primary at its first and only try.
            after = await publisher.publish(Q1, "after the kill")
            again = await publisher.publish(Q1, "and the next")
        assert new != old
        assert again.position.offset == after.position.offset + 1
        stored: Any = group.server(new).client().xrange(KEYS.history(Q1))
        data = [decode_envelope(fields[b"p"]).data for _, fields in stored]
        assert data[-2:] == ["after the kill", "and the next"]
        assert data.count("after the kill") == 1
