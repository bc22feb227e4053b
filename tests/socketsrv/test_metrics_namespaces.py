"""Metrics by namespace (issue 14, item 5): publications received, frames delivered and open
subscriptions, each labelled with the channel's kind, whose values are the namespace file's
kinds and nothing else.

The hub's counting runs on the in-process bus with recording subscribers; what a scrape shows
runs on real fleets over a real Redis: two workers summed by the supervisor's multiprocess
files, and a fleet given a namespace file with a new kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from herald_contract.envelope import pack_data
from herald_contract.errors import InvalidChannel
from herald_contract.memory_bus import MemoryBus
from herald_contract.namespaces_file import DEFAULT_FILE, default_namespaces, load_namespaces
from publisher.publish import Publisher
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics, build_metrics, render
from socketsrv.worker import Worker
from tests.socketsrv.test_hub import RecordingSubscriber
from tests.support.client import HeraldTestClient
from tests.support.fleet import ROOT, Fleet
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import ws_url

SHIPPED_KINDS = set(default_namespaces().kinds)
SERIES = (
    "herald_namespace_publications_received_total",
    "herald_namespace_frames_delivered_total",
    "herald_namespace_subscriptions_open",
)


def by_namespace(text: bytes | str, name: str) -> dict[str, float]:
    """The samples of *name* in a scrape, by their ``namespace`` label (summed over the
    other labels)."""
    text = text.decode() if isinstance(text, bytes) else text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                kind = sample.labels["namespace"]
                found[kind] = found.get(kind, 0.0) + sample.value
    return found


def sample(text: bytes, name: str) -> float:
    """An unlabelled sample of a scrape."""
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name and not s.labels:
                return s.value
    raise AssertionError(f"{name} is not in the scrape")


def scraped(metrics: Metrics) -> bytes:
    return render(metrics, None)


# The hub's counting


@pytest.fixture
async def counted() -> AsyncIterator[tuple[Hub, MemoryBus, Metrics]]:
    bus = MemoryBus(history_size=50)
    metrics = build_metrics(CollectorRegistry())
    hub = Hub(bus, metrics=metrics, history_limit=50, unsubscribe_grace_s=0.0)
    await bus.start(hub)
    yield hub, bus, metrics
    await hub.close()
    await bus.close()


async def test_every_kind_of_the_file_is_exported_at_zero_from_the_start_and_no_other(
    counted: tuple[Hub, MemoryBus, Metrics],
) -> None:
    _, _, metrics = counted
    text = scraped(metrics)
    for name in SERIES:
        assert by_namespace(text, name) == dict.fromkeys(SHIPPED_KINDS, 0.0), name


async def test_publications_deliveries_and_subscriptions_are_counted_by_namespace(
    counted: tuple[Hub, MemoryBus, Metrics],
) -> None:
    hub, bus, metrics = counted
    readers = [RecordingSubscriber() for _ in range(2)]
    tagged = RecordingSubscriber()
    for reader in readers:
        await hub.subscribe(reader, "question:1", None, reader.on_subscribed)
    await hub.subscribe(tagged, "tag:python", None, tagged.on_subscribed)
    for n in range(3):
        await bus.publish("question:1", pack_data({"n": n}))
    for n in range(2):
        await bus.publish("tag:python", pack_data({"n": n}))
    await bus.publish("user:7", pack_data({"n": 0}))  # nobody here: the hub never gets it
    await eventually(lambda: len(readers[1].frames) == 3 and len(tagged.frames) == 2, timeout_s=20)

    # The fan-out adds to plain integers; the worker's sweep exports them (flush_counts).
    assert by_namespace(scraped(metrics), SERIES[1])["question"] == 0.0
    hub.flush_counts()
    text = scraped(metrics)
    publications = by_namespace(text, SERIES[0])
    deliveries = by_namespace(text, SERIES[1])
    subscriptions = by_namespace(text, SERIES[2])
    assert publications == {**dict.fromkeys(SHIPPED_KINDS, 0.0), "question": 3.0, "tag": 2.0}
    assert deliveries == {**dict.fromkeys(SHIPPED_KINDS, 0.0), "question": 6.0, "tag": 2.0}
    assert subscriptions == {**dict.fromkeys(SHIPPED_KINDS, 0.0), "question": 2.0, "tag": 1.0}
    # They split the unlabelled series, which stay for the alerts and dashboards on them.
    assert sum(publications.values()) == sample(text, "herald_publications_received_total")
    assert sum(deliveries.values()) == sample(text, "herald_frames_delivered_total")
    assert sum(subscriptions.values()) == sample(text, "herald_subscriptions_open")

    hub.unsubscribe(readers[0], "question:1")
    hub.remove(tagged, {"tag:python"})
    hub.unsubscribe(tagged, "tag:python")  # twice: counted once
    subscriptions = by_namespace(scraped(metrics), SERIES[2])
    assert subscriptions == {**dict.fromkeys(SHIPPED_KINDS, 0.0), "question": 1.0}
    hub.flush_counts()  # nothing new: the counters stay
    assert by_namespace(scraped(metrics), SERIES[1])["question"] == 6.0


async def test_a_subscribe_that_fails_leaves_no_subscription_counted(
    counted: tuple[Hub, MemoryBus, Metrics],
) -> None:
    hub, bus, metrics = counted
    sub = RecordingSubscriber()
    await bus.close()  # the bus is gone: the subscribe fails
    with pytest.raises(Exception):  # noqa: B017, PT011 (BusUnavailable or the bus's own)
        await hub.subscribe(sub, "question:1", None, sub.on_subscribed)
    assert by_namespace(scraped(metrics), SERIES[2]) == dict.fromkeys(SHIPPED_KINDS, 0.0)


async def test_a_channel_of_a_kind_the_file_lacks_never_reaches_a_label(
    counted: tuple[Hub, MemoryBus, Metrics],
) -> None:
    # Sessions parse every name against the same file before the hub sees it; were one not
    # to, the hub refuses it rather than add a label value.
    hub, _, metrics = counted
    sub = RecordingSubscriber()
    with pytest.raises(InvalidChannel, match="unknown kind"):
        await hub.subscribe(sub, "feed:alice", None, sub.on_subscribed)
    assert hub.channel_count == 0
    for name in SERIES:
        assert set(by_namespace(scraped(metrics), name)) == SHIPPED_KINDS


async def test_invalid_channels_sent_by_clients_are_refused_before_any_label(
    worker: Worker,
) -> None:
    client = HeraldTestClient(ws_url(worker))
    await client.open()
    try:
        for channel in ("feed:alice", "question:01", "nope", "Question:1", "tag:{x}", "x" * 300):
            refused = await client.request({"op": "subscribe", "channel": channel})
            assert refused["type"] == "error" and refused["code"] == 422, refused
        assert (await client.subscribe("question:1"))["type"] == "reply"
    finally:
        await client.close()
    text = scraped(worker.metrics)
    for name in SERIES:
        assert set(by_namespace(text, name)) == SHIPPED_KINDS, name


# What a scrape of a fleet shows, on a real Redis


async def wait_scrape(fleet: Fleet, ready: dict[str, dict[str, float]]) -> bytes:
    """A scrape of *fleet* once it shows every expected value of *ready* (name -> kind ->
    value); any worker may answer, each reports the whole fleet."""
    deadline = time.monotonic() + 30
    while True:
        status, text = await asyncio.to_thread(fleet.http_get, "/metrics")
        shown = {name: by_namespace(text, name) if status == 200 else {} for name in ready}
        if all(
            shown[name].get(kind) == value
            for name, values in ready.items()
            for kind, value in values.items()
        ):
            return text
        assert time.monotonic() < deadline, f"the scrape shows {shown}, not {ready}"
        await asyncio.sleep(0.05)


@pytest.fixture
def fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(redis_url=redis_server.url, workers=2, log=tmp_path / "fleet.log")
    running.wait_ready()
    yield running
    running.close()


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_fleet_reports_each_namespace_summed_over_its_workers(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    reader = HeraldTestClient(fleet.url)
    tagged = HeraldTestClient(fleet.url)
    await reader.open()
    await tagged.open()
    try:
        assert (await reader.subscribe("question:1"))["type"] == "reply"
        assert (await tagged.subscribe("tag:python"))["type"] == "reply"
        async with Publisher(redis_server.url) as publisher:
            for n in range(3):
                await publisher.publish("question:1", {"n": n})
            for n in range(2):
                await publisher.publish("tag:python", {"n": n})
        await eventually(
            lambda: len(reader.data("question:1")) == 3 and len(tagged.data("tag:python")) == 2,
            timeout_s=30,
        )
        # One subscriber a channel: one worker holds each, whichever the kernel picked.
        text = await wait_scrape(
            fleet,
            {
                SERIES[0]: {"question": 3.0, "tag": 2.0},
                SERIES[1]: {"question": 3.0, "tag": 2.0},
                SERIES[2]: {"question": 1.0, "tag": 1.0},
            },
        )
        for name in SERIES:
            values = by_namespace(text, name)
            assert set(values) == SHIPPED_KINDS, name
            assert values["user"] == values["questions"] == values["probe"] == 0.0
    finally:
        await reader.close()
        await tagged.close()
    await wait_scrape(fleet, {SERIES[2]: {"question": 0.0, "tag": 0.0}})


FEED = """
[[namespace]]
name = "feed"
description = "a follower feed of a second application"
subscribe = "anyone"
key = { type = "name", max_length = 20, chars = "a-z0-9_" }
"""


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_new_kind_of_the_namespace_file_gets_its_own_label(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "namespaces.toml"
    path.write_text((ROOT / "herald_contract" / DEFAULT_FILE).read_text() + FEED)
    fleet = Fleet(
        redis_url=redis_server.url,
        workers=1,
        log=tmp_path / "fleet.log",
        HERALD_NAMESPACES_FILE=str(path),
    )
    try:
        fleet.wait_ready()
        client = HeraldTestClient(fleet.url)
        await client.open()
        try:
            assert (await client.subscribe("feed:alice"))["type"] == "reply"
            namespaces = load_namespaces(path)
            async with Publisher(redis_server.url, namespaces=namespaces) as publisher:
                for n in range(4):
                    await publisher.publish("feed:alice", {"n": n})
            await eventually(lambda: len(client.data("feed:alice")) == 4, timeout_s=30)
            text = await wait_scrape(
                fleet,
                {
                    SERIES[0]: {"feed": 4.0},
                    SERIES[1]: {"feed": 4.0},
                    SERIES[2]: {"feed": 1.0},
                },
            )
        finally:
            await client.close()
        for name in SERIES:
            assert set(by_namespace(text, name)) == SHIPPED_KINDS | {"feed"}, name
    finally:
        await asyncio.to_thread(fleet.close)
