"""Schemathesis against the Q&A core's OpenAPI schema: no input gets a 500, every answer is
documented and matches its schema (docs/qa-core.md, "Errors").

A live server on SQLite with a logged-in, verified user whose question 1 and answer 1 exist,
so authenticated calls reach past the 401 and some ids resolve. Bounded: a few examples per
operation, so the whole module runs in seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings

from qasite.main import create_app
from tests.qasite.support import RecordingSink, png_bytes, qa_settings, truncate
from tests.support.redis_server import free_port

MAX_EXAMPLES = 12
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("qa-fuzz")
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp / 'qa.sqlite3'}"
    else:
        database_url = request.getfixturevalue("pg_database")
        asyncio.run(truncate(database_url))
    port = free_port()
    settings = qa_settings(tmp, database_url, public_base_url=f"http://127.0.0.1:{port}")
    app = create_app(settings, sink=RecordingSink())
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


@pytest.fixture(scope="module")
def auth_headers(live_url: str) -> dict[str, str]:
    with httpx.Client(base_url=live_url) as client:
        body = {"email": "fuzz@example.org", "password": "fuzzing password"}
        assert client.post("/api/auth/register", json=body).status_code == 202
        link = client.get("/dev/mailbox").json()[0]["link"]
        assert client.get(link).status_code == 200
        tokens = client.post("/api/auth/login", json=body).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        question = {"title": "A question to fuzz", "body": "body", "tags": ["fuzz"]}
        assert client.post("/api/questions", json=question, headers=headers).status_code == 201
        answer = client.post("/api/questions/1/answers", json={"body": "a"}, headers=headers)
        assert answer.status_code == 201
        image = client.post("/api/questions/1/attachments", content=png_bytes(), headers=headers)
        assert image.status_code == 201
        return headers


def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    live_url: str, auth_headers: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
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
            response = case.call_and_validate(headers=auth_headers, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            call()
        except AssertionError as exc:  # schemathesis failures are AssertionError subclasses
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    # The examples reached past validation and authentication, not only into 422s.
    assert statuses[200] + statuses[201] + statuses[204] > 0, statuses
    assert statuses[422] > 0, statuses
    assert statuses[404] > 0, statuses
