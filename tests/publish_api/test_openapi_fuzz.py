"""Schemathesis against the publish API's OpenAPI document: no generated request gets a 500,
every answer is documented and matches its schema, schema-invalid input is refused
(docs/publish-api.md, "Errors"). A live server on the in-process bus; bounded examples."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import schemathesis

from herald_contract.namespaces_file import default_namespaces
from publish_api.targets import BusTarget
from tests.publish_api.support import AUTH, api, started_memory_bus
from tests.support.openapi_fuzz import fuzz, served

MAX_EXAMPLES = 60


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    bus = asyncio.run(started_memory_bus())
    app, _ = api(BusTarget(bus, default_namespaces()), max_body_bytes=16 * 1024)
    with served(app) as url:
        yield url


def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    live_url: str,
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "POST /api/publish",
        "POST /api/broadcast",
        "POST /api/batch",
    }
    failures, statuses = fuzz(operations, AUTH, MAX_EXAMPLES)
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    assert statuses[422] > 0, statuses
    # The document's channel pattern lets examples reach past the grammar to a publication.
    assert statuses[200] > 0, statuses


def test_a_generated_publication_on_a_real_channel_is_published(live_url: str) -> None:
    """The examples above mostly miss the channel grammar; this one does not."""
    with httpx.Client(base_url=live_url, headers=AUTH) as client:
        reply = client.post("/api/publish", json={"channel": "tag:fuzz", "data": None})
        unknown = client.get("/api/publish")
        missing = client.post("/api/nothing", json={})
    assert reply.status_code == 200 and reply.json()["offset"] >= 1
    assert unknown.status_code == 405 and unknown.json()["error"]["reason"] == "method_not_allowed"
    assert missing.status_code == 404 and missing.json()["error"]["reason"] == "not_found"
