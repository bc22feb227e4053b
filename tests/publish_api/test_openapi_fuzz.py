"""Schemathesis against the publish API's OpenAPI document: no generated request gets a 500,
every answer is documented and matches its schema, schema-invalid input is refused
(docs/publish-api.md, "Errors"). A live server on the in-process bus; bounded examples."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings

from herald_contract.namespaces_file import default_namespaces
from publish_api.targets import BusTarget
from tests.publish_api.support import AUTH, api, started_memory_bus
from tests.support.redis_server import free_port

MAX_EXAMPLES = 60
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    bus = asyncio.run(started_memory_bus())
    app, _ = api(BusTarget(bus, default_namespaces()), max_body_bytes=16 * 1024)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


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
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=AUTH, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            call()
        except AssertionError as exc:  # schemathesis failures are AssertionError subclasses
            failures[operation.label] = str(exc)[:2000]
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
