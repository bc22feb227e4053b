"""The anonymous question page, answered in front of the framework (issue 15, item 5).

    app.add_middleware(PageFront, site=app, route=questions.PAGE_ROUTE)  # innermost

Most page views are anonymous, and on a warm cache an anonymous view is one stamp query and
a copy of cached bytes (qasite/api/page.py). Through FastAPI the same view also matched the
path against every route, solved the route's dependencies (the context, the bearer check,
the path parameter's validation) and built a Request and a Response: half of a worker's CPU
per warm view (py-spy, bench/results/QA_CACHE.md). This middleware answers
``GET /api/questions/{id}`` itself when the request carries no ``Authorization`` header,
with what the route answers (same status, headers and bytes, from the same
:func:`~qasite.api.page.question_page`), as Django's cache middleware answers anonymous
requests before the view runs.

Everything else goes on to the framework unchanged, and so does a page request the front
cannot answer itself, which the route then answers with its documented error:

* a signed-in viewer (``Authorization`` present: the route checks the token and adds
  ``my_vote``);
* an id the route would parse differently (leading zeros, past ``MAX_ID``, not ASCII digits)
  or a path with a trailing slash;
* a question that does not exist (``404``), or a read that failed (the database down:
  ``503``). The route then reads again: under an outage a page request makes two attempts.

The request still passes the middlewares outside this one: it is counted and timed under the
route's template by :class:`~qasite.core.metrics.RequestMetrics`, and uvicorn logs it.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from herald_contract.channels import MAX_ID
from qasite.api.page import question_page
from qasite.core.context import QAContext

PAGE_TEMPLATE = "/api/questions/{question_id}"
_PAGE_PATH = re.compile(r"/api/questions/([1-9][0-9]{0,18})")
_CONTENT_TYPE = (b"content-type", b"application/json")


def _anonymous(scope: Scope) -> bool:
    return all(name != b"authorization" for name, _ in scope["headers"])


def _question_id(scope: Scope) -> int | None:
    """The id of a page request the front answers; None for anything else."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    found = _PAGE_PATH.fullmatch(path)
    if found is None or not _anonymous(scope):
        return None
    question_id = int(found[1])
    return question_id if question_id <= MAX_ID else None


class PageFront:
    """ASGI middleware: anonymous question pages without the framework; see the module."""

    def __init__(self, app: ASGIApp, site: FastAPI, route: APIRoute) -> None:
        if route.path != PAGE_TEMPLATE or "GET" not in (route.methods or ()):
            raise ValueError(f"PageFront answers GET {PAGE_TEMPLATE}, not {route.path}")
        self._app = app
        self._site = site
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        question_id = _question_id(scope)
        context: QAContext | None = getattr(self._site.state, "qa", None)
        if question_id is None or context is None:
            await self._app(scope, receive, send)
            return
        try:
            body = await question_page(context.db, context.pages, question_id, None)
        except Exception:  # noqa: BLE001 - the route answers it, with its documented error
            await self._app(scope, receive, send)
            return
        scope["route"] = self._route  # what the router sets: the metrics label the template
        headers = [(b"content-length", str(len(body)).encode()), _CONTENT_TYPE]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
