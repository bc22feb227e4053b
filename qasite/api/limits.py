"""Request body caps per route, applied before the body is read (issue 11, item 5).

    app.add_middleware(BodyLimit, default_bytes=..., by_route={template: bytes}, refused=...)

A route's cap is ``by_route[<its template>]`` (the upload routes: ``max_attachment_bytes``),
else ``default_bytes`` (``max_request_body_bytes``). The middleware wraps ``receive``: the
first time the route asks for its body, a ``Content-Length`` over the cap is refused before a
byte of it is taken; a chunked (or understated) body is counted as it arrives and refused as
soon as it passes the cap. Either way the answer is ``413`` in the API's error format with
``Connection: close`` (the unread rest is not drained), and
``herald_qa_http_refused{reason="body_too_large"}`` counts it. A route that never reads its
body never pays for it: uvicorn buffers at most 64 KiB before it stops reading the socket.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter
from starlette.exceptions import HTTPException

from qasite.core.metrics import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: the request body of each route is at most its cap (413 past it)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_bytes: int,
        by_route: Mapping[str, int],
        refused: Counter,
    ) -> None:
        self._app = app
        self._default_bytes = default_bytes
        self._by_route = dict(by_route)
        self._refused = refused

    def limit_of(self, scope: Scope) -> int:
        """The cap of the route *scope* matched (its template), else the default."""
        path = getattr(scope.get("route"), "path", None)
        return (
            self._by_route.get(path, self._default_bytes)
            if isinstance(path, str)
            else (self._default_bytes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = _content_length(scope)
        limit: int | None = None
        received = 0

        async def limited_receive() -> Message:
            nonlocal limit, received
            if limit is None:  # first call: routing is done, the route's cap is known
                limit = self.limit_of(scope)
                if declared is not None and declared > limit:
                    raise self._too_large(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large(limit)
            return message

        await self._app(scope, limited_receive, send)

    def _too_large(self, limit: int) -> HTTPException:
        # An HTTPException passes FastAPI's body parsing untouched (other errors become 400)
        # and is answered by qasite.api.errors in the API's format.
        self._refused.labels("body_too_large").inc()
        return HTTPException(
            413, f"the request body is limited to {limit} bytes", {"Connection": "close"}
        )


def _content_length(scope: Scope) -> int | None:
    """The declared body length, or None (absent, chunked, or not a number)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = bytes(value).strip()
            return int(text) if text.isdigit() else None
    return None
