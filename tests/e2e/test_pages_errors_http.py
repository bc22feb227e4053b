"""HTML error pages (issue 13, item 7): a browser asking for a page that does not exist gets
a page in words with the status; the API, static files and endpoints keep their errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from qasite.core.settings import Settings
from qasite.main import create_app

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path, socket_url="wss://rt.example.com/ws", dev_mailbox=True)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as http:
            yield http


@pytest.mark.parametrize("path", ["/nowhere", "/questions/abc", "/questions/42/x", "/a/b/c"])
async def test_a_browser_gets_an_html_page_in_words_for_an_unknown_page(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path, headers=BROWSER)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in r.text
    assert "There is no page at this address" in r.text
    assert 'href="/"' in r.text and "/static/web/error.js" in r.text
    assert "Content-Security-Policy" in r.headers


async def test_a_question_that_does_not_exist_is_an_html_404_in_words(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/questions/999999", headers=BROWSER)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in r.text
    assert "There is no such question: it may have been deleted." in r.text


async def test_a_wrong_method_on_the_api_stays_a_json_405_for_a_browser(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/api/auth/password/reset", headers=BROWSER)
    assert r.status_code == 405 and r.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path", ["/api/questions/abc", "/api/nowhere", "/static/web/nothing.js", "/dev/nowhere"]
)
async def test_the_api_and_static_files_keep_json_errors_even_for_a_browser(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path, headers=BROWSER)
    assert r.status_code in (404, 422)
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == r.status_code


async def test_a_non_browser_client_keeps_json_errors_on_page_paths(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/nowhere")
    assert r.status_code == 404
    assert r.json()["error"]["reason"] == "not_found"


@pytest.mark.parametrize(
    ("path", "heading"), [("/forgot", "Forgot your password?"), ("/reset", "Choose a new password")]
)
async def test_the_account_recovery_pages_are_served(
    client: httpx.AsyncClient, path: str, heading: str
) -> None:
    r = await client.get(path, headers=BROWSER)
    assert r.status_code == 200
    assert f"<h1>{heading}</h1>" in r.text and "/static/web/forms.js" in r.text
