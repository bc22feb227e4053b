"""The pages' router over HTTP, without a browser: shells, headers and the static files."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from qasite.core.settings import Settings
from qasite.main import create_app
from qasite.web import pages


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The Q&A core in-process (its lifespan run), with no bus: the pages need none."""
    settings = Settings(data_dir=tmp_path, socket_url="wss://rt.example.com/ws", dev_mailbox=True)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as http:
            yield http


async def a_question(client: httpx.AsyncClient) -> int:
    """A question asked by a new, verified user (through the API and the dev mailbox)."""
    account = {"email": "asker@example.org", "password": "correct horse battery"}
    assert (await client.post("/api/auth/register", json=account)).status_code == 202
    link = (await client.get("/dev/mailbox")).json()[0]["link"]
    assert (await client.get(re.sub(r"^https?://[^/]+", "", link))).status_code == 200
    token = (await client.post("/api/auth/login", json=account)).json()["access_token"]
    question = {"title": "A question for the shell", "body": "Its body.", "tags": ["shell"]}
    r = await client.post(
        "/api/questions", json=question, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 201, r.text
    question_id: int = r.json()["id"]
    return question_id


@pytest.mark.parametrize(
    ("path", "script"),
    [
        ("/", "list.js"),
        ("/questions/{question}", "question.js"),
        ("/inbox", "inbox.js"),
        ("/login", "forms.js"),
        ("/signup", "forms.js"),
        ("/verify", "forms.js"),
    ],
)
async def test_each_page_is_a_shell_with_its_script_the_socket_url_and_a_strict_csp(
    client: httpx.AsyncClient, path: str, script: str
) -> None:
    if "{question}" in path:
        path = path.format(question=await a_question(client))
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert f'<script type="module" src="/static/web/{script}">' in html
    assert '<meta name="herald-socket-url" content="wss://rt.example.com/ws">' in html
    assert '<meta name="herald-dev" content="1">' in html  # the dev mailbox is on: its link
    csp = response.headers["content-security-policy"]
    assert "connect-src 'self' wss://rt.example.com;" in csp
    assert "'unsafe-inline'" not in csp
    # The one inline script, the import map, is allowed by its hash and nothing else.
    inline = re.findall(r"<script type=\"importmap\">(.*?)</script>", html, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in csp


async def test_the_question_page_carries_its_id_and_refuses_ids_outside_the_grammar(
    client: httpx.AsyncClient,
) -> None:
    question_id = await a_question(client)
    assert f'data-question="{question_id}"' in (await client.get(f"/questions/{question_id}")).text
    missing = await client.get(f"/questions/{question_id + 1}")  # no such question: HTML 404
    assert missing.status_code == 404 and "There is no such question" in missing.text
    assert (await client.get("/questions/0")).status_code == 422
    assert (await client.get("/questions/abc")).status_code == 422


async def test_page_assets_are_served_with_their_types_and_nothing_else_is(
    client: httpx.AsyncClient,
) -> None:
    script = await client.get("/static/web/live.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/static/web/site.css")).headers["content-type"].startswith("text/css")
    assert (await client.get("/static/web/missing.js")).status_code == 404
    for name in ("..%2Fapp.py", "tsconfig.json", "LIVE.JS", ".hidden.js"):
        assert (await client.get(f"/static/web/{name}")).status_code in (404, 422), name
    assert (await client.get("/static/herald/..%2F..%2Fpackage.json")).status_code in (404, 422)


async def test_the_client_modules_come_from_the_build_or_a_503_that_says_how_to_build(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = tmp_path / "dist"
    built.mkdir()
    (built / "index.js").write_text("export {};\n")
    monkeypatch.setattr(pages, "CLIENT_DIST", built)
    module = await client.get("/static/herald/index.js")
    assert module.status_code == 200
    assert module.headers["content-type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/static/herald/client.js")).status_code == 404

    monkeypatch.setattr(pages, "CLIENT_DIST", tmp_path / "not-built")
    missing = await client.get("/static/herald/index.js")
    assert missing.status_code == 503
    assert "npm ci && npm run build" in missing.text


async def test_a_configured_client_dist_dir_is_served_instead_of_the_source_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "CLIENT_DIST", tmp_path / "not-built")
    image_copy = tmp_path / "client-js-dist"  # where the Docker image keeps its build
    image_copy.mkdir()
    (image_copy / "index.js").write_text("export const fromTheImage = 1;\n")
    app = create_app(Settings(data_dir=tmp_path / "data", client_dist_dir=image_copy))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as http:
            module = await http.get("/static/herald/index.js")
    assert module.status_code == 200
    assert "fromTheImage" in module.text


async def test_pages_offer_no_mailbox_link_when_the_dev_mailbox_is_off(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, socket_url="wss://rt.example.com/ws"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as http:
            html = (await http.get("/signup")).text
    assert 'name="herald-dev"' not in html
