"""The anonymous question page answered in front of the framework: the same status, headers
and bytes as the route, counted under the route's template; everything it cannot answer goes
on to the route, which answers it as before (qasite/api/page_front.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from herald_contract.channels import MAX_ID
from qasite.api import page_front
from qasite.api.page import question_page
from qasite.api.routes import questions
from tests.qasite.support import QA, error_of

Reads = list[str]


@pytest.fixture
def route_reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Who read each page: ``route`` (the framework's endpoint) or ``front``."""
    reads: Reads = []

    def counting(who: str) -> Callable[..., Awaitable[bytes]]:
        async def read(*args: Any) -> bytes:
            reads.append(who)
            return await question_page(*args)

        return read

    monkeypatch.setattr(questions, "question_page", counting("route"))
    monkeypatch.setattr(page_front, "question_page", counting("front"))
    return reads


def requests_counted(qa: QA, status: str) -> float:
    value = qa.app.state.metrics.registry.get_sample_value(
        "herald_qa_http_requests_total",
        {"route": "/api/questions/{question_id}", "method": "GET", "status": status},
    )
    return float(value or 0.0)


async def test_an_anonymous_page_is_answered_in_front_with_the_routes_status_headers_and_bytes(
    qa: QA, route_reads: Reads
) -> None:
    asker = await qa.signup()
    q = await qa.ask(asker)
    await qa.answer(asker, q["id"])
    front = await qa.client.get(f"/api/questions/{q['id']}")
    route = await qa.client.get(f"/api/questions/{q['id']:04d}")  # leading zeros: the route
    assert route_reads == ["front", "route"]
    assert front.status_code == route.status_code == 200
    assert front.headers.multi_items() == route.headers.multi_items()
    assert front.content == route.content
    assert front.json()["answers"][0]["body_md"] == "Use pathlib."


async def test_a_page_answered_in_front_is_counted_under_the_routes_template(
    qa: QA, route_reads: Reads
) -> None:
    q = await qa.ask(await qa.signup())
    before = requests_counted(qa, "200")
    assert (await qa.client.get(f"/api/questions/{q['id']}")).status_code == 200
    assert route_reads == ["front"]
    assert requests_counted(qa, "200") == before + 1


async def test_a_signed_in_viewer_is_answered_by_the_route_with_their_votes(
    qa: QA, route_reads: Reads
) -> None:
    asker, voter = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    vote = await qa.client.put(
        f"/api/questions/{q['id']}/vote", json={"value": 1}, headers=voter.headers
    )
    assert vote.status_code == 200, vote.text
    page = await qa.client.get(f"/api/questions/{q['id']}", headers=voter.headers)
    assert route_reads == ["route"]
    assert page.json()["my_vote"] == 1


async def test_a_bad_token_is_refused_by_the_route_not_served_in_front(
    qa: QA, route_reads: Reads
) -> None:
    q = await qa.ask(await qa.signup())
    page = await qa.client.get(
        f"/api/questions/{q['id']}", headers={"Authorization": "Bearer not-a-token"}
    )
    assert page.status_code == 401
    assert route_reads == []  # the route's token check refused it before reading


async def test_a_missing_question_is_the_routes_404(qa: QA, route_reads: Reads) -> None:
    r = await qa.client.get("/api/questions/999999")
    assert r.status_code == 404
    assert error_of(r)["reason"] == "not_found"
    assert route_reads == ["front", "route"]
    assert requests_counted(qa, "404") == 1


@pytest.mark.parametrize("bad_id", ["0", str(MAX_ID + 1), "12a", "-3", "١٢"])
async def test_an_id_the_front_does_not_take_is_the_routes_422(
    qa: QA, route_reads: Reads, bad_id: str
) -> None:
    r = await qa.client.get(f"/api/questions/{bad_id}")
    assert r.status_code == 422, r.text
    assert route_reads == []


async def test_a_read_that_fails_in_front_is_answered_by_the_route(
    qa: QA, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = await qa.ask(await qa.signup())

    async def failing(*_args: Any) -> bytes:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(page_front, "question_page", failing)
    r = await qa.client.get(f"/api/questions/{q['id']}")
    assert r.status_code == 200
    assert r.json()["id"] == q["id"]


async def test_other_methods_on_the_page_path_go_to_the_framework(
    qa: QA, route_reads: Reads
) -> None:
    q = await qa.ask(await qa.signup())
    assert (await qa.client.head(f"/api/questions/{q['id']}")).status_code == 405
    assert (await qa.client.patch(f"/api/questions/{q['id']}", json={})).status_code == 401
    assert route_reads == []
