"""Schemathesis against a FastAPI app's OpenAPI document, served live from a thread.

    with served(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        failures, statuses = fuzz(operations, headers, max_examples=12)

Used by the Q&A core's and the publish API's fuzz tests: every generated request must get a
documented answer that matches its schema, and never a server error.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings

from tests.support.redis_server import free_port

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@contextlib.contextmanager
def served(app: Any, port: int | None = None) -> Iterator[str]:
    """*app* under uvicorn in a daemon thread on loopback (*port*, or a free one): its URL."""
    port = free_port() if port is None else port
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


def fuzz(
    operations: list[Any], headers: dict[str, str], max_examples: int
) -> tuple[dict[str, str], Counter[int]]:
    """Call each operation with up to *max_examples* generated requests (and its explicit
    examples), checked by :data:`CHECKS`: the failures by operation, and the statuses seen."""
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            call()
        except AssertionError as exc:  # schemathesis failures are AssertionError subclasses
            failures[operation.label] = str(exc)[:2000]
    return failures, statuses
