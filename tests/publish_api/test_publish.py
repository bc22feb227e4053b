"""The three operations (publish_api/app.py) on the in-process bus and on a real Redis:
replies carry (epoch, offset) as the library returns them; idempotency, order, validation,
size limits and an unavailable bus are answered as docs/publish-api.md says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from herald_contract.envelope import StreamPosition, decode_envelope
from herald_contract.keys import KeyLayout
from herald_contract.memory_bus import MemoryBus
from herald_contract.namespaces_file import default_namespaces
from publish_api.targets import BusTarget, PublishTarget
from publisher.publish import Publisher
from tests.publish_api.support import AUTH, api, client_of, sample, started_memory_bus
from tests.support.redis_server import RedisServer


@dataclass
class Backend:
    """A target and a way to read a channel's stored publications (offset, event id, data)."""

    target: PublishTarget
    bus: MemoryBus | None
    redis: RedisServer | None

    async def stored(self, channel: str) -> list[tuple[int, str, Any]]:
        if self.bus is not None:
            read = await self.bus.history(channel, None, 0)
            if read.position.offset == 0:
                return []
            since = StreamPosition(read.position.epoch, 0)
            envelopes = (await self.bus.history(channel, since, 1000)).publications
        else:
            assert self.redis is not None
            entries = self.redis.client().xrange(KeyLayout().history(channel))
            envelopes = [fields[b"p"] for _, fields in entries]
        decoded = [decode_envelope(e) for e in envelopes]
        return [(e.offset, e.event_id, e.data) for e in decoded]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        bus = await started_memory_bus()
        yield Backend(BusTarget(bus, default_namespaces()), bus, None)
        await bus.close()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with Publisher(server.url) as publisher:
        yield Backend(publisher, None, server)


async def test_publish_answers_the_epoch_and_offset_and_stores_the_publication(
    backend: Backend,
) -> None:
    app, metrics = api(backend.target)
    async with client_of(app) as client:
        first = await client.post(
            "/api/publish", json={"channel": "question:7", "data": {"score": 3}}, headers=AUTH
        )
        second = await client.post(
            "/api/publish", json={"channel": "question:7", "data": [1, "é"]}, headers=AUTH
        )
    assert first.status_code == 200, first.text
    assert first.json()["offset"] == 1 and second.json()["offset"] == 2
    assert first.json()["epoch"] == second.json()["epoch"]
    assert first.json()["duplicate"] is False
    assert await backend.stored("question:7") == [(1, "", {"score": 3}), (2, "", [1, "é"])]
    assert sample(metrics, "herald_api_requests_total", endpoint="publish", status="200") == 2


async def test_the_same_event_id_twice_gives_the_same_offset_and_publishes_once(
    backend: Backend,
) -> None:
    app, metrics = api(backend.target)
    body = {"channel": "question:8", "data": {"n": 1}, "event_id": "vote:991"}
    async with client_of(app) as client:
        first = await client.post("/api/publish", json=body, headers=AUTH)
        again = await client.post("/api/publish", json=body, headers=AUTH)
    assert first.json()["offset"] == again.json()["offset"] == 1
    assert again.json()["duplicate"] is True and again.json()["epoch"] == first.json()["epoch"]
    assert await backend.stored("question:8") == [(1, "vote:991", {"n": 1})]
    assert sample(metrics, "herald_api_publications_total", key="billing", result="duplicate") == 1


async def test_http_and_the_library_share_offsets_and_idempotency_on_one_channel(
    backend: Backend,
) -> None:
    """Whichever way a publication arrives, it takes the channel's next offset, and an event
    id published by the library is a duplicate over HTTP."""
    app, _ = api(backend.target)
    packed = backend.target.check("question:9", {"from": "library"}, event_id="e-1")
    by_library = await backend.target.publish_packed("question:9", packed, event_id="e-1")
    async with client_of(app) as client:
        repeat = await client.post(
            "/api/publish",
            json={"channel": "question:9", "data": {"from": "http"}, "event_id": "e-1"},
            headers=AUTH,
        )
        fresh = await client.post(
            "/api/publish", json={"channel": "question:9", "data": {"from": "http"}}, headers=AUTH
        )
    assert repeat.json()["duplicate"] is True
    assert repeat.json()["offset"] == by_library.position.offset == 1
    assert fresh.json()["offset"] == 2
    assert [o for o, _, _ in await backend.stored("question:9")] == [1, 2]


async def test_a_broadcast_is_one_publication_per_channel_and_a_retry_publishes_nothing_twice(
    backend: Backend,
) -> None:
    app, _ = api(backend.target)
    channels = ["question:1", "question:2", "tag:python"]
    async with client_of(app) as client:
        await client.post(
            "/api/publish", json={"channel": "question:2", "data": "before"}, headers=AUTH
        )
        body = {"channels": channels, "data": {"type": "notice"}, "event_id": "notice-1"}
        first = await client.post("/api/broadcast", json=body, headers=AUTH)
        retry = await client.post("/api/broadcast", json=body, headers=AUTH)
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert [(r["channel"], r["offset"], r["duplicate"]) for r in results] == [
        ("question:1", 1, False),
        ("question:2", 2, False),
        ("tag:python", 1, False),
    ]
    assert [(r["offset"], r["duplicate"]) for r in retry.json()["results"]] == [
        (1, True),
        (2, True),
        (1, True),
    ]
    for channel in channels:
        assert (await backend.stored(channel))[-1][1:] == ("notice-1", {"type": "notice"})


async def test_a_batch_keeps_the_order_per_channel_and_answers_in_request_order(
    backend: Backend,
) -> None:
    app, _ = api(backend.target)
    publications = [
        {"channel": f"question:{1 + i % 3}", "data": i, "event_id": f"b-{i}"} for i in range(30)
    ]
    async with client_of(app) as client:
        reply = await client.post("/api/batch", json={"publications": publications}, headers=AUTH)
        again = await client.post(
            "/api/batch", json={"publications": publications[:2]}, headers=AUTH
        )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [r["channel"] for r in results] == [p["channel"] for p in publications]
    assert [r["offset"] for r in results] == [1 + i // 3 for i in range(30)]
    for channel in ("question:1", "question:2", "question:3"):
        stored = await backend.stored(channel)
        assert [d for _, _, d in stored] == sorted(d for _, _, d in stored)
    assert [r["duplicate"] for r in again.json()["results"]] == [True, True]


async def test_an_invalid_channel_or_too_large_data_is_422_and_nothing_is_published(
    backend: Backend,
) -> None:
    app, metrics = api(backend.target, max_body_bytes=1024 * 1024)
    big = "x" * (64 * 1024 + 1)
    publications = [
        {"channel": "question:1", "data": 1},
        {"channel": "question:{1}", "data": 2},
        {"channel": "question:3", "data": big},
    ]
    async with client_of(app) as client:
        reply = await client.post("/api/batch", json={"publications": publications}, headers=AUTH)
        single = await client.post(
            "/api/publish", json={"channel": "nope:1", "data": 1}, headers=AUTH
        )
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["reason"] == "invalid"
    assert [(p["where"], p["reason"]) for p in error["problems"]] == [
        ("publications.1.channel", "invalid_channel"),
        ("publications.2.data", "invalid_data"),
    ]
    assert "more than 65536" in error["message"]
    assert single.status_code == 422
    assert single.json()["error"]["problems"][0]["reason"] == "invalid_channel"
    assert await backend.stored("question:1") == []
    assert sample(metrics, "herald_api_refused_total", reason="invalid_channel") == 2


async def test_shape_errors_are_422_in_the_error_shape_and_counted(backend: Backend) -> None:
    app, metrics = api(backend.target)
    async with client_of(app) as client:
        cases = [
            await client.post("/api/publish", json={"channel": "question:1"}, headers=AUTH),
            await client.post(
                "/api/publish",
                json={"channel": "question:1", "data": 1, "event_id": "has space"},
                headers=AUTH,
            ),
            await client.post("/api/publish", content=b"\xff\xfe", headers=AUTH),
            await client.post(
                "/api/broadcast",
                json={"channels": ["question:1", "question:1"], "data": 1},
                headers=AUTH,
            ),
            await client.post("/api/batch", json={"publications": []}, headers=AUTH),
        ]
    for reply in cases:
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"]["code"] == 422
    assert cases[0].json()["error"]["problems"][0]["where"] == "data"
    assert "given twice" in cases[3].json()["error"]["message"]
    assert sample(metrics, "herald_api_refused_total", reason="invalid") == 5


async def test_a_body_over_the_limit_is_413_before_it_is_parsed(backend: Backend) -> None:
    app, metrics = api(backend.target, max_body_bytes=200)
    data = "y" * 300
    async with client_of(app) as client:
        reply = await client.post(
            "/api/publish", json={"channel": "question:1", "data": data}, headers=AUTH
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b'{"channel": "question:1", "data": "' + b"z" * 30

        chunked = await client.post("/api/publish", content=chunks(), headers=AUTH)
    assert reply.status_code == 413 and chunked.status_code == 413
    assert reply.json()["error"]["reason"] == "too_large"
    assert sample(metrics, "herald_api_refused_total", reason="too_large") == 2
    assert await backend.stored("question:1") == []


async def test_a_bus_that_does_not_take_a_publication_is_503_with_retry_after(
    redis_server: RedisServer,
) -> None:
    async with Publisher(redis_server.url, socket_timeout_s=1.0) as publisher:
        app, metrics = api(publisher)
        async with client_of(app) as client:
            body = {"channel": "question:1", "data": 1, "event_id": "e1"}
            assert (await client.post("/api/publish", json=body, headers=AUTH)).status_code == 200
            redis_server.stop()
            down = await client.post("/api/publish", json=body, headers=AUTH)
            batch = await client.post(
                "/api/batch",
                json={"publications": [body, {"channel": "question:2", "data": 2}]},
                headers=AUTH,
            )
            redis_server.start()
            retried = await client.post("/api/publish", json=body, headers=AUTH)
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert down.json()["error"]["reason"] == "unavailable"
    assert "Redis" not in down.text  # nothing internal is sent
    assert batch.status_code == 503
    assert [r["error"]["code"] for r in batch.json()["error"]["results"]] == [503, 503]
    assert retried.status_code == 200  # history lost with the restart: a new epoch
    assert sample(metrics, "herald_api_publications_total", key="billing", result="failed") >= 2


def test_the_envelope_data_is_what_was_posted() -> None:
    """JSON in, msgpack in the envelope: a value survives as JSON clients will see it."""
    namespaces = default_namespaces()
    target = BusTarget(MemoryBus(), namespaces)
    assert msgpack.unpackb(target.check("question:1", {"1": [True, None, 1.5]})) == {
        "1": [True, None, 1.5]
    }


async def test_the_body_is_json_whatever_its_content_type_says(backend: Backend) -> None:
    """``curl -d`` sends application/x-www-form-urlencoded; the docs' examples use it."""
    app, _ = api(backend.target)
    async with client_of(app) as client:
        reply = await client.post(
            "/api/publish",
            content=b'{"channel": "question:4", "data": 4}',
            headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        )
    assert reply.status_code == 200, reply.text
    assert await backend.stored("question:4") == [(1, "", 4)]


def test_the_openapi_document_describes_the_request_bodies() -> None:
    app, _ = api(BusTarget(MemoryBus(), default_namespaces()))
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert {"PublishRequest", "BroadcastRequest", "BatchRequest", "ErrorBody"} <= set(schemas)
    body = document["paths"]["/api/batch"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BatchRequest"
    }
    assert schemas["PublishRequest"]["required"] == ["channel", "data"]
    assert set(document["components"]["securitySchemes"]) == {
        "APIKeyHeader",
        "AuthorizationApiKey",
    }
