"""The live pages: HTML shells, their scripts and styles, and the browser client.

    /                  the question list ("N new questions" banner, ``questions:new``)
    /questions/{id}    a question, its answers and comments, live on ``question:<id>``
    /inbox             the signed-in user's inbox, live on ``user:<id>``
    /login /signup /verify
    /forgot /reset     account recovery (issue 13, item 5)

Each page is a small HTML shell (``qasite/web/templates``) whose ES module
(``qasite/web/static``) loads the state from the JSON API and keeps it live with the
browser client, served from ``client-js/dist`` at ``/static/herald/`` and imported as
``@herald/client`` through an import map. How a page avoids missing an event between its
load and its subscription is in docs/pages.md.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from string import Template
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from herald_contract.channels import MAX_ID
from qasite.api.deps import QuestionId, ReadSession, SettingsDep
from qasite.api.errors import NotFound
from qasite.core.settings import Settings
from qasite.domain.models import Question, Tag, User
from qasite.domain.names import display_name

WEB_DIR = Path(__file__).resolve().parent
CLIENT_DIST = Path(__file__).resolve().parents[2] / "client-js" / "dist"
"""The built browser client (``npm run build`` in client-js/)."""

IMPORT_MAP = json.dumps({"imports": {"@herald/client": "/static/herald/index.js"}})
_IMPORT_MAP_HASH = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()

STATIC_NAME = r"^[a-z][a-z0-9-]*\.(js|css)$"
CLIENT_NAME = r"^[a-z][a-z0-9-]*\.js(\.map)?$"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
}

router = APIRouter(include_in_schema=False)


@cache
def _template(name: str) -> Template:
    return Template((WEB_DIR / "templates" / f"{name}.html").read_text(encoding="utf-8"))


def _security_headers(settings: Settings) -> dict[str, str]:
    """Scripts only from this origin plus the import map; sockets only to the fleet."""
    socket_origin = re.sub(r"^(wss?://[^/?#]+).*$", r"\1", settings.socket_url)
    csp = "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'sha256-{_IMPORT_MAP_HASH}'",
            f"connect-src 'self' {socket_origin}",
            "img-src 'self' data:",
            "style-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }


def render_page(
    settings: Settings, page: str, title: str, script: str, **values: str
) -> HTMLResponse:
    """The layout around the page's template; *values* fill the page template (escaped)."""
    escaped = {k: html.escape(v) for k, v in values.items()}
    main = _template(page).substitute(escaped, finder_results=_template("finder-results").template)
    dev_meta = '<meta name="herald-dev" content="1">' if settings.serves_dev_mailbox else ""
    body = _template("layout").substitute(
        title=html.escape(title),
        page=page,
        main=main,
        script=script,
        socket_url=html.escape(settings.socket_url),
        dev_meta=dev_meta,
        importmap=IMPORT_MAP,
    )
    return HTMLResponse(body, headers=_security_headers(settings))


SIMPLE_PAGES = {
    "/": ("list", "Questions", "list.js"),
    "/inbox": ("inbox", "Inbox", "inbox.js"),
    "/login": ("login", "Log in", "forms.js"),
    "/signup": ("signup", "Sign up", "forms.js"),
    "/verify": ("verify", "Verify your email", "forms.js"),
}
"""The pages that take no parameter: path -> (template, title, script)."""


def _simple_page(page: str, title: str, script: str) -> Callable[..., Awaitable[HTMLResponse]]:
    async def serve(settings: SettingsDep) -> HTMLResponse:
        return render_page(settings, page, title, script)

    serve.__name__ = f"{page}_page"
    return serve


for _path, (_page, _title, _script) in SIMPLE_PAGES.items():
    router.add_api_route(
        _path, _simple_page(_page, _title, _script), methods=["GET"], response_class=HTMLResponse
    )


# --- P2 (issue 13, items 3-4): asking, answering, owning your posts -------------------------
# Above /questions/{question_id}, which would otherwise take "ask" for an id (a 422).

VENDOR_NAME = r"^[a-z][a-z0-9.-]*\.(js|css)$"


@router.get("/questions/ask", response_class=HTMLResponse)
async def ask_page(settings: SettingsDep) -> HTMLResponse:
    """The ask page: guidance, preview, tag suggestions, images (signed-in; the script sends
    a visitor to log in first)."""
    return render_page(settings, "ask", "Ask a question", "ask.js")


@router.get("/static/web/vendor/{name}")
async def vendor_asset(name: Annotated[str, PathParam(pattern=VENDOR_NAME)]) -> Response:
    """Libraries vendored in the package (highlight.js: static/vendor/README.md), never a CDN."""
    return _file(WEB_DIR / "static" / "vendor", name)


@router.get("/questions/{question_id}", response_class=HTMLResponse)
async def question_page(
    question_id: QuestionId, settings: SettingsDep, session: ReadSession
) -> HTMLResponse:
    """The shell; a question that does not exist (or no longer) is the HTML 404 page. (One
    deleted after this answer is reported by the page's load.)"""
    if await session.scalar(select(Question.id).where(Question.id == question_id)) is None:
        return error_page(settings, 404, "There is no such question: it may have been deleted.")
    return render_page(
        settings, "question", "Question", "question.js", question_id=str(question_id)
    )


def _file(directory: Path, name: str) -> FileResponse:
    path = directory / name
    if not path.is_file():
        raise NotFound(f"no file {name}")
    return FileResponse(
        path,
        media_type=_MEDIA_TYPES[path.suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/static/web/{name}")
async def page_asset(name: Annotated[str, PathParam(pattern=STATIC_NAME)]) -> Response:
    """The pages' own scripts and styles (revalidated on each load: no build step, no hashes)."""
    return _file(WEB_DIR / "static", name)


@router.get("/static/herald/{name}")
async def client_module(
    name: Annotated[str, PathParam(pattern=CLIENT_NAME)], settings: SettingsDep
) -> Response:
    """A module of the built browser client; 503 when client-js has not been built."""
    dist = settings.client_dist_dir if settings.client_dist_dir is not None else CLIENT_DIST
    if not (dist / "index.js").is_file():
        return Response(
            "the browser client is not built: run `npm ci && npm run build` in client-js/\n",
            status_code=503,
            media_type="text/plain",
        )
    return _file(dist, name)


# --- P3 (issue 13, items 5 and 7): account recovery pages, HTML error pages -----------------
#
#     /forgot            ask for a password-reset mail (forms.js)
#     /reset?token=      choose a new password (forms.js)
#
# A browser's request (GET, Accept: text/html) for a page path that fails (an unknown path,
# a malformed id, an error) is answered with an HTML page in words and the same status; the
# JSON API, the static files and the operational endpoints keep their JSON errors.

ACCOUNT_PAGES = {
    "/forgot": ("forgot", "Forgot your password", "forms.js"),
    "/reset": ("reset", "Choose a new password", "forms.js"),
}
for _path, (_page, _title, _script) in ACCOUNT_PAGES.items():
    router.add_api_route(
        _path, _simple_page(_page, _title, _script), methods=["GET"], response_class=HTMLResponse
    )

NOT_PAGES = ("/api/", "/dev/", "/static/", "/metrics", "/openapi.json", "/docs", "/healthz")
"""Paths whose errors stay JSON (or plain text) whatever the client accepts."""

ERROR_WORDS = {
    404: ("Page not found", "There is no page at this address. It may have moved, or the link "
          "may be mistyped."),
    405: ("Not allowed", "This page cannot be opened this way."),
    500: ("Something went wrong", "The page failed on our side. Try again in a moment."),
    503: ("Busy", "The site is busy right now. Try again in a moment."),
}  # fmt: skip


def wants_page(request: Request) -> bool:
    """A browser asking for a page (not the API, a static file or an endpoint)."""
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("accept", "")
        and not request.url.path.startswith(NOT_PAGES)
        and request.url.path not in ("/readyz", "/livez")
    )


def error_page(settings: Settings, status: int, message: str | None = None) -> HTMLResponse:
    """The HTML page of an error *status* (a 4xx without words of its own reads as a 404),
    in its own words or *message* (which tag or user does not exist)."""
    shown = status if status in ERROR_WORDS else (500 if status >= 500 else 404)
    heading, words = ERROR_WORDS[shown]
    message = words if message is None else message
    response = render_page(
        settings, "error", heading, "error.js", heading=heading, message=message, status=str(shown)
    )
    response.status_code = shown
    return response


def install_error_pages(app: FastAPI, settings: Settings) -> None:
    """Answer browsers' failed page requests with :func:`error_page`; call after the API's
    handlers are installed (they answer everything else)."""
    for kind in (StarletteHTTPException, RequestValidationError, Exception):
        api_handler = app.exception_handlers[kind]

        async def handle(
            request: Request, exc: Exception, api_handler: Any = api_handler
        ) -> Response:
            if not wants_page(request):
                answer: Response = await api_handler(request, exc)
                return answer
            if isinstance(exc, StarletteHTTPException):
                return error_page(settings, exc.status_code)
            if isinstance(exc, RequestValidationError):
                return error_page(settings, 404)  # /questions/abc: no such page
            await api_handler(request, exc)  # logs it once
            return error_page(settings, 500)

        app.add_exception_handler(kind, handle)


# --- P1 (issue 13, items 1-2): finding, tags and people -------------------------------------
#
#     /search            the question list with the search form: text, tags, dates, minimum
#                        score, unanswered; sort tabs; ?cursor= pages (list.js)
#     /tags/{name}       one tag's questions, live on ``tag:<name>`` (list.js)
#     /users/{id}        a user's questions and answers, member since (user.js)
#
# An unknown tag or user is answered with the HTML 404 page (error.html), in words.

_TAG_NAME = re.compile(r"[a-z0-9.][a-z0-9+#.\-]{0,34}")
"""The channel grammar's tag alphabet (herald_contract.channels), as the tags table holds."""


@router.get("/search", response_class=HTMLResponse)
async def search_page(settings: SettingsDep) -> HTMLResponse:
    """The shell; the query lives in the URL (``?q=&tag=&sort=&cursor=``...), read by list.js."""
    return render_page(settings, "search", "Search", "list.js")


@router.get("/tags/{name}", response_class=HTMLResponse)
async def tag_page(name: str, settings: SettingsDep, session: ReadSession) -> HTMLResponse:
    found = (
        _TAG_NAME.fullmatch(name) is not None
        and await session.scalar(select(Tag.id).where(Tag.name == name)) is not None
    )
    if not found:
        return error_page(settings, 404, f"There is no tag “{name[:40]}” (yet).")
    return render_page(
        settings, "tag", f"Questions tagged {name}", "list.js", tag=name, ask_tags=quote(name)
    )


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user_page(user_id: str, settings: SettingsDep, session: ReadSession) -> HTMLResponse:
    user = None
    if user_id.isascii() and user_id.isdigit() and 0 < int(user_id) <= MAX_ID:
        user = await session.get(User, int(user_id))
    if user is None:
        return error_page(settings, 404, "There is no such user.")
    return render_page(
        settings, "user", display_name(user.display_name), "user.js", user_id=str(user.id)
    )
