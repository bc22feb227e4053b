"""Issue 11, item 5: request bodies are capped per route before they are read (413).

The review posted 100 MiB of JSON to ``/api/auth/login``; it was read in full before the 422.
Here the client declares or streams more than the cap and never sends the rest: an answer
at all proves the server did not wait for the body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qasite.api.server import Parser
from tests.qasite.api.limits_support import (
    body_of,
    exchange,
    refused,
    request,
    serving,
    sqlite_settings,
    status_of,
)
from tests.qasite.support import QA, png_bytes, running_qa

CAP = 4096


def _assert_too_large(answer: bytes) -> None:
    assert status_of(answer) == 413, answer[:300]
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert b"connection: close" in head
    error = json.loads(body_of(answer))["error"]
    assert (error["code"], error["reason"]) == (413, "too_large")
    assert str(CAP) in error["message"]


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_a_declared_100_mib_login_is_refused_before_its_body_is_read(
    tmp_path: Path, sqlite_template: Path, parser: Parser
) -> None:
    settings = sqlite_settings(tmp_path, sqlite_template, max_request_body_bytes=CAP)
    head = request(
        "POST",
        "/api/auth/login",
        "Content-Type: application/json",
        f"Content-Length: {100 * 1024 * 1024}",
    )
    async with serving(settings, parser) as port:
        _assert_too_large(await exchange(port, head + b'{"email": "a@example.org", "pass'))
        assert await refused(port, "body_too_large") == 1


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_cap(
    tmp_path: Path, sqlite_template: Path, parser: Parser
) -> None:
    settings = sqlite_settings(tmp_path, sqlite_template, max_request_body_bytes=CAP)
    head = request(
        "POST", "/api/auth/login", "Content-Type: application/json", "Transfer-Encoding: chunked"
    )
    chunk = b"x" * 1024
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(CAP // 1024 + 1))
    async with serving(settings, parser) as port:
        # No last chunk: the body never ends, so only the cap can answer.
        _assert_too_large(await exchange(port, head + chunks))
        assert await refused(port, "body_too_large") == 1


@pytest.fixture
async def small_bodies(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[QA]:
    settings = sqlite_settings(
        tmp_path, sqlite_template, max_request_body_bytes=CAP, max_attachment_bytes=64 * 1024
    )
    async with running_qa(settings, migrate_on_start=False) as qa:
        yield qa


async def test_uploads_keep_their_larger_cap_and_json_routes_the_small_one(
    small_bodies: QA,
) -> None:
    qa = small_bodies
    user = await qa.signup()
    question = await qa.ask(user)
    image = png_bytes(64, 64, noise=True)
    assert CAP < len(image) < 64 * 1024
    r = await qa.client.post(
        f"/api/questions/{question['id']}/attachments", content=image, headers=user.headers
    )
    assert r.status_code == 201, r.text
    big_question = {"title": "A long question", "body": "x" * CAP, "tags": ["python"]}
    r = await qa.client.post("/api/questions", json=big_question, headers=user.headers)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["reason"] == "too_large"
