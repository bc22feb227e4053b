"""How the domain's errors are answered over HTTP (qasite/api/errors.py): the status, reason
and message every client already knows, and a search cursor's own reason."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from qasite.api.errors import install_handlers
from qasite.domain.errors import DomainError, InvalidInput, JustDeleted, NotAllowed, NotFound
from qasite.domain.search import BadCursor

CASES = [
    (NotFound("question", 7), 404, "not_found", "no question 7"),
    (JustDeleted("answer", 3), 404, "not_found", "this answer was just deleted"),
    (NotAllowed("vote on your own post"), 403, "forbidden", "you cannot vote on your own post"),
    (InvalidInput("q", "at most 200 characters"), 422, "invalid", "q: at most 200 characters"),
    (InvalidInput(None, "sort=relevance needs a full-text query (q)"), 422, "invalid",
     "sort=relevance needs a full-text query (q)"),
    (BadCursor("altered or issued by another server; start again"), 422, "bad_cursor",
     "cursor: altered or issued by another server; start again"),
    (DomainError("refused"), 400, "bad_request", "refused"),
]  # fmt: skip


@pytest.mark.parametrize(("error", "status", "reason", "message"), CASES)
async def test_a_domain_error_is_answered_with_its_status_reason_and_message(
    error: DomainError, status: int, reason: str, message: str
) -> None:
    app = FastAPI()
    install_handlers(app)

    @app.get("/refused")
    async def refused() -> None:
        raise error

    async with AsyncClient(transport=ASGITransport(app), base_url="http://qa") as client:
        r = await client.get("/refused")
    assert r.status_code == status
    assert r.json() == {"error": {"code": status, "reason": reason, "message": message}}


def test_the_fields_of_an_error_are_kept_beside_its_message() -> None:
    error = InvalidInput("limit", "between 1 and 100")
    assert (error.field, error.problem, error.message) == ("limit", "between 1 and 100",
                                                           "limit: between 1 and 100")  # fmt: skip
    assert (NotFound("comment", 9).kind, NotFound("comment", 9).ident) == ("comment", 9)


# --- found by schemathesis (issue 13's routes) ---------------------------------------------


def two_routers_on_one_path() -> FastAPI:
    """``GET`` and ``POST /items`` from two routers, as ``/api/questions`` is served."""
    from fastapi import APIRouter

    app = FastAPI()
    install_handlers(app)
    listing, asking = APIRouter(), APIRouter()

    @listing.get("/items")
    async def list_items() -> list[int]:
        return []

    @asking.post("/items")
    async def add_item(item: dict[str, int]) -> dict[str, int]:
        return item

    app.include_router(listing)
    app.include_router(asking)
    return app


async def test_a_405_allows_every_method_of_the_path_not_only_the_first_routers() -> None:
    async with AsyncClient(
        transport=ASGITransport(two_routers_on_one_path()), base_url="http://qa"
    ) as client:
        r = await client.request("OPTIONS", "/items")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    assert r.json()["error"]["reason"] == "method_not_allowed"


async def test_a_body_that_is_not_even_utf8_is_invalid_input_not_an_undocumented_400() -> None:
    async with AsyncClient(
        transport=ASGITransport(two_routers_on_one_path()), base_url="http://qa"
    ) as client:
        r = await client.post(
            "/items", content=b"\xff\xfeC", headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 422
    assert r.json()["error"] == {
        "code": 422,
        "reason": "invalid",
        "message": "body: the body is not JSON (not even UTF-8 text)",
    }
