"""API keys (publish_api/auth.py, guard.py): missing, malformed, wrong and rotated keys."""

from __future__ import annotations

import hmac

import pytest

from herald_contract.namespaces_file import default_namespaces
from publish_api.auth import MALFORMED, MISSING, WRONG, ApiKeys
from publish_api.targets import BusTarget
from tests.publish_api.support import KEY, NEW_KEY, api, client_of, sample, started_memory_bus

BODY = {"channel": "question:1", "data": {"score": 1}}


async def test_a_request_without_a_key_is_401_with_a_message_and_counted() -> None:
    app, metrics = api(BusTarget(await started_memory_bus(), default_namespaces()))
    async with client_of(app) as client:
        reply = await client.post("/api/publish", json=BODY)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "apikey"
    assert reply.json() == {
        "error": {"code": 401, "reason": "unauthenticated", "message": MISSING.message}
    }
    assert sample(metrics, "herald_api_refused_total", reason="missing_key") == 1


async def test_a_wrong_key_is_401_and_nothing_is_published() -> None:
    bus = await started_memory_bus()
    app, metrics = api(BusTarget(bus, default_namespaces()))
    async with client_of(app) as client:
        wrong = await client.post("/api/publish", json=BODY, headers={"X-API-Key": KEY + "x"})
        prefix = await client.post("/api/publish", json=BODY, headers={"X-API-Key": KEY[:-1]})
    assert [wrong.status_code, prefix.status_code] == [401, 401]
    assert wrong.json()["error"]["message"] == WRONG.message
    assert sample(metrics, "herald_api_refused_total", reason="wrong_key") == 2
    assert (await bus.history("question:1", None, 10)).position.offset == 0


async def test_a_key_is_refused_before_the_body_is_read_even_when_the_body_is_bad() -> None:
    app, _ = api(BusTarget(await started_memory_bus(), default_namespaces()), max_body_bytes=10)
    async with client_of(app) as client:
        reply = await client.post("/api/publish", content=b"x" * 100)
    assert reply.status_code == 401


@pytest.mark.parametrize(
    "authorization", ["Bearer " + KEY, "apikey", "apikey   ", KEY, "Basic abc"]
)
async def test_an_authorization_header_of_another_scheme_is_401_malformed(
    authorization: str,
) -> None:
    app, metrics = api(BusTarget(await started_memory_bus(), default_namespaces()))
    async with client_of(app) as client:
        reply = await client.post(
            "/api/publish", json=BODY, headers={"Authorization": authorization}
        )
    assert reply.status_code == 401
    assert reply.json()["error"]["message"] == MALFORMED.message
    assert sample(metrics, "herald_api_refused_total", reason="malformed_key") == 1


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": KEY}, {"Authorization": f"apikey {KEY}"}, {"Authorization": f"ApiKey {KEY}"}],
)
async def test_the_key_is_taken_from_either_header(headers: dict[str, str]) -> None:
    app, metrics = api(BusTarget(await started_memory_bus(), default_namespaces()))
    async with client_of(app) as client:
        reply = await client.post("/api/publish", json=BODY, headers=headers)
    assert reply.status_code == 200, reply.text
    assert sample(metrics, "herald_api_publications_total", key="billing", result="published") == 1


async def test_a_rotated_key_old_and_new_both_work_then_only_the_new_one() -> None:
    bus = await started_memory_bus()
    namespaces = default_namespaces()
    during, during_metrics = api(BusTarget(bus, namespaces), (("old", KEY), ("new", NEW_KEY)))
    after, _ = api(BusTarget(bus, namespaces), (("new", NEW_KEY),))
    async with client_of(during) as client:
        old = await client.post("/api/publish", json=BODY, headers={"X-API-Key": KEY})
        new = await client.post("/api/publish", json=BODY, headers={"X-API-Key": NEW_KEY})
    assert [old.status_code, new.status_code] == [200, 200]
    assert sample(during_metrics, "herald_api_publications_total", key="old", result="published")
    assert sample(during_metrics, "herald_api_publications_total", key="new", result="published")
    async with client_of(after) as client:
        old = await client.post("/api/publish", json=BODY, headers={"X-API-Key": KEY})
        new = await client.post("/api/publish", json=BODY, headers={"X-API-Key": NEW_KEY})
    assert [old.status_code, new.status_code] == [401, 200]
    assert new.json()["offset"] == 3


def test_identify_compares_the_digest_of_every_key_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = ApiKeys([("a", "a" * 16), ("b", "b" * 16), ("c", "c" * 16)])
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(x: bytes, y: bytes) -> bool:
        calls.append((x, y))
        return real(x, y)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert keys.identify("a" * 16) == "a"  # the first key matches; the others are compared too
    assert keys.identify("nope") is None
    assert len(calls) == 6
    assert all(len(x) == len(y) == 32 for x, y in calls)  # digests: the lengths say nothing
