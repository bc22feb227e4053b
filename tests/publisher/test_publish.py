"""publisher/publish.py and the Lua scripts behind it, against a real redis-server."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import redis.asyncio

from herald_contract.envelope import StreamPosition, build_envelope, decode_envelope
from herald_contract.errors import BusUnavailable, InvalidChannel, InvalidPayload, PublishFailed
from herald_contract.history import HistorySettings, check_event_id, history_complete
from herald_contract.keys import KeyLayout
from herald_contract.redis_scripts import PublishScripts
from herald_contract.stream import HistoryRead
from publisher.publish import Publisher
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually

CHANNEL = "question:42"
KEYS = KeyLayout()


@pytest.fixture
async def publisher(redis_server: RedisServer) -> AsyncIterator[Publisher]:
    async with Publisher(redis_server.url) as publisher:
        yield publisher


def stored(server: RedisServer, channel: str = CHANNEL) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The raw history stream entries of *channel*."""
    entries: Any = server.client().xrange(KEYS.history(channel))
    return [(entry_id, fields) for entry_id, fields in entries]


# -- the envelope the script builds ----------------------------------------------------------


@pytest.mark.parametrize("top", [0, 126, 254, 65_534, 2**32 - 2, 2**40, 2**53 - 2])
async def test_the_lua_envelope_is_byte_for_byte_the_python_one(
    redis_server: RedisServer, publisher: Publisher, top: int
) -> None:
    # Offsets on each msgpack integer width boundary; cmsgpack must pick Python's widths.
    redis_server.client().hset(KEYS.meta(CHANNEL), mapping={"epoch": "e", "top": top})
    data = {"text": "x" * 40, "n": [1, -1, 2**31, 1.5, None, True]}
    result = await publisher.publish(CHANNEL, data, event_id="e" * 128)
    [(entry_id, fields)] = stored(redis_server)
    envelope = decode_envelope(fields[b"p"])
    assert entry_id == f"{top + 1}-0".encode()
    assert (envelope.epoch, envelope.offset, envelope.event_id) == ("e", top + 1, "e" * 128)
    assert envelope.data == data
    assert envelope.published_ms == int(fields[b"t"])
    assert result.position == StreamPosition("e", top + 1)
    packed = msgpack.packb(data)
    python_twin = build_envelope("e", top + 1, envelope.published_ms, "e" * 128, packed)
    assert fields[b"p"] == python_twin


async def test_a_publication_goes_out_live_as_the_stored_envelope(
    redis_server: RedisServer, publisher: Publisher
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.subscribe(KEYS.live(CHANNEL))
    await publisher.publish(CHANNEL, {"score": 1})
    message = None
    async with asyncio.timeout(5):
        while message is None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    [(_, fields)] = stored(redis_server)
    assert message["data"] == fields[b"p"]


# -- what the script keeps -------------------------------------------------------------------


async def test_the_history_keeps_exactly_history_size_entries(redis_server: RedisServer) -> None:
    async with Publisher(redis_server.url, history_size=3) as publisher:
        for n in range(5):
            await publisher.publish(CHANNEL, n)
    assert [entry_id for entry_id, _ in stored(redis_server)] == [b"3-0", b"4-0", b"5-0"]


async def test_every_key_gets_its_ttl(redis_server: RedisServer) -> None:
    async with Publisher(
        redis_server.url, history_ttl_s=60, meta_ttl_s=3600, idempotency_ttl_s=600
    ) as publisher:
        result = await publisher.publish(CHANNEL, 1, event_id="evt")
    client = redis_server.client()
    assert 59_000 < client.pttl(KEYS.history(CHANNEL)) <= 60_000
    assert 3_599_000 < client.pttl(KEYS.meta(CHANNEL)) <= 3_600_000
    event_key = KEYS.event_prefix(CHANNEL) + "evt"
    assert 599_000 < client.pttl(event_key) <= 600_000
    assert client.get(event_key) == f"1 {result.position.epoch}".encode()


def age_the_history(server: RedisServer, ages_s: list[float]) -> None:
    """Give CHANNEL a history of entries 1, 2, ... published *ages_s* ago by Redis's clock.

    Entries are written as the script writes them (offset ids, fields t and p), so the next
    publish judges their age exactly as it would judge real ones, without waiting.
    """
    client = server.client()
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    for offset, age_s in enumerate(ages_s, start=1):
        published_ms = now_ms - round(age_s * 1000)
        envelope = build_envelope("e", offset, published_ms, "", msgpack.packb(offset))
        client.xadd(KEYS.history(CHANNEL), {"t": published_ms, "p": envelope}, id=f"{offset}-0")
    client.hset(KEYS.meta(CHANNEL), mapping={"epoch": "e", "top": len(ages_s)})


async def test_entries_older_than_the_ttl_are_trimmed_by_the_next_publish(
    redis_server: RedisServer,
) -> None:
    age_the_history(redis_server, [600.0, 600.0, 30.0])
    async with Publisher(redis_server.url, history_ttl_s=60) as publisher:
        await publisher.publish(CHANNEL, 4)
    assert [entry_id for entry_id, _ in stored(redis_server)] == [b"3-0", b"4-0"]


async def test_one_publish_trims_at_most_eight_expired_entries(
    redis_server: RedisServer,
) -> None:
    # Bounded work per publish: a backlog drains over the next publishes.
    age_the_history(redis_server, [600.0] * 10)
    async with Publisher(redis_server.url, history_ttl_s=60) as publisher:
        await publisher.publish(CHANNEL, 11)
        assert [entry_id for entry_id, _ in stored(redis_server)] == [b"9-0", b"10-0", b"11-0"]
        await publisher.publish(CHANNEL, 12)
    assert [entry_id for entry_id, _ in stored(redis_server)] == [b"11-0", b"12-0"]


async def test_a_history_without_publications_expires_after_its_ttl(
    redis_server: RedisServer,
) -> None:
    async with Publisher(redis_server.url, history_ttl_s=0.05) as publisher:
        await publisher.publish(CHANNEL, 1)
    client = redis_server.client()
    # Redis's own expiry, waited for (bounded): the meta key, with its longer TTL, stays.
    await eventually(lambda: not client.exists(KEYS.history(CHANNEL)))
    assert client.hget(KEYS.meta(CHANNEL), "top") == b"1"


async def test_a_repeated_event_id_publishes_nothing_and_returns_the_first_position(
    redis_server: RedisServer, publisher: Publisher
) -> None:
    first = await publisher.publish(CHANNEL, "a", event_id="answer:1")
    again = await publisher.publish(CHANNEL, "a", event_id="answer:1")
    assert (again.position, again.duplicate) == (first.position, True)
    assert len(stored(redis_server)) == 1


async def test_prefixes_keep_installations_apart(redis_server: RedisServer) -> None:
    async with (
        Publisher(redis_server.url, prefix="one") as one,
        Publisher(redis_server.url, prefix="two") as two,
    ):
        assert (await one.publish(CHANNEL, 1)).position.offset == 1
        assert (await two.publish(CHANNEL, 1)).position.offset == 1
        assert (await one.publish(CHANNEL, 1)).position.offset == 2


async def test_the_scripts_on_another_client_see_the_same_channel(
    redis_server: RedisServer, publisher: Publisher
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    scripts = PublishScripts(client, KEYS, HistorySettings())
    created = await scripts.history(CHANNEL, None, 10)  # nothing published: ("-", 0)
    published = await publisher.publish(CHANNEL, "hello")
    assert published.position.offset == 1
    assert (await scripts.history(CHANNEL, None, 10)).position == published.position
    result = await scripts.history(CHANNEL, created.position, 10)
    assert result.complete
    assert [decode_envelope(raw).data for raw in result.publications] == ["hello"]
    with pytest.raises(ValueError, match="limit"):
        await scripts.history(CHANNEL, None, -1)
    await client.aclose()


async def test_pipelined_history_reads_work_after_redis_forgot_the_script(
    redis_server: RedisServer, publisher: Publisher
) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    scripts = PublishScripts(client, KEYS, HistorySettings())
    first = await publisher.publish(CHANNEL, "one")
    await publisher.publish(CHANNEL, "two")
    redis_server.client().script_flush()  # what a restart without persistence also does
    results = await scripts.history_many(
        [HistoryRead(CHANNEL, first.position, 10), HistoryRead("question:7", None, 10)]
    )
    assert [decode_envelope(raw).data for raw in results[0].publications] == ["two"]
    assert results[1].position.offset == 0
    await client.aclose()


async def test_pipelined_history_reads_on_an_unreachable_redis_raise_bus_unavailable() -> None:
    client = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    scripts = PublishScripts(client, KEYS, HistorySettings())
    with pytest.raises(BusUnavailable):
        await scripts.history_many([HistoryRead(CHANNEL, None, 10)])
    await client.aclose()


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["", "question:0", "question:01", "Tag:x", "user:", 42])
async def test_an_invalid_channel_is_refused(publisher: Publisher, channel: Any) -> None:
    with pytest.raises(InvalidChannel):
        await publisher.publish(channel, 1)


@pytest.mark.parametrize("data", [{1, 2}, b"bytes", math.nan, {"x": math.inf}, object()])
async def test_data_that_is_not_json_compatible_is_refused(publisher: Publisher, data: Any) -> None:
    with pytest.raises(InvalidPayload):
        await publisher.publish(CHANNEL, data)


async def test_data_larger_than_max_data_bytes_is_refused(redis_server: RedisServer) -> None:
    async with Publisher(redis_server.url, max_data_bytes=10) as publisher:
        await publisher.publish(CHANNEL, "12345678")
        with pytest.raises(InvalidPayload, match="more than 10"):
            await publisher.publish(CHANNEL, "123456789")


@pytest.mark.parametrize("event_id", ["has space", "é", "x" * 129, "a/b", "{tag}"])
async def test_a_malformed_event_id_is_refused(publisher: Publisher, event_id: str) -> None:
    with pytest.raises(InvalidPayload, match="event id"):
        await publisher.publish(CHANNEL, 1, event_id=event_id)


async def test_an_unreachable_redis_fails_the_publish() -> None:
    async with Publisher(f"redis://127.0.0.1:{free_port()}/0") as publisher:
        with pytest.raises(PublishFailed) as caught:
            await publisher.publish(CHANNEL, 1)
    assert caught.value.channel == CHANNEL


async def test_a_restarted_redis_is_reached_again_without_a_new_publisher(
    redis_server: RedisServer, publisher: Publisher
) -> None:
    await publisher.publish(CHANNEL, 1)
    redis_server.restart(keep_data=False)
    # The pooled connection may not have seen the close yet (and may be too recently used
    # for the pool's PING): then the first try fails on it and, having an event id, the
    # publish is tried once more on a new connection (test_lost_connections.py).
    result = await publisher.publish(CHANNEL, 2, event_id="after-restart")
    assert (result.position.offset, result.duplicate) == (1, False)


# -- pure helpers ----------------------------------------------------------------------------


def test_a_backend_imports_the_publisher_and_its_errors_from_the_package() -> None:
    import publisher

    assert publisher.Publisher is Publisher
    for error in (InvalidChannel, InvalidPayload, PublishFailed, BusUnavailable):
        assert issubclass(error, publisher.HeraldPublishError)


def test_event_ids_allow_letters_digits_and_separators() -> None:
    assert check_event_id("") == ""
    assert check_event_id("vote:991_a.b-c") == "vote:991_a.b-c"
    assert check_event_id("x" * 128) == "x" * 128


@pytest.mark.parametrize(
    ("since", "first", "count", "complete"),
    [
        (StreamPosition("e", 10), None, 0, True),
        (StreamPosition("e", 7), 8, 3, True),
        (StreamPosition("e", 7), 8, 2, False),
        (StreamPosition("e", 7), 9, 2, False),
        (StreamPosition("e", 11), None, 0, False),
        (StreamPosition("e", -1), None, 0, False),
        (StreamPosition("other", 10), None, 0, False),
    ],
)
def test_history_is_complete_only_when_it_reaches_the_top_without_a_gap(
    since: StreamPosition, first: int | None, count: int, complete: bool
) -> None:
    assert history_complete(since, StreamPosition("e", 10), first, count) is complete


@pytest.mark.parametrize(
    "settings",
    [
        {"history_size": 0},
        {"history_ttl_s": 0},
        {"meta_ttl_s": -1},
        {"idempotency_ttl_s": math.nan},
    ],
)
def test_history_settings_refuse_empty_windows(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        HistorySettings(**settings)
