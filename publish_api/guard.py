"""The ASGI layer in front of the routes: API key, body size, request metrics.

For every path under ``/api/`` the key is checked first (401, before the body is even read,
so an unauthenticated caller cannot make the server parse anything), then the body is read up
to ``max_body_bytes`` (413 past it, from the ``Content-Length`` or while reading a chunked
body), then the route runs with the key's name in ``request.state.api_key``. Every answer is
counted in ``herald_api_requests_total{endpoint, status}`` and timed.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publish_api.auth import ApiKeys, KeyProblem
from publish_api.errors import error_body
from publish_api.metrics import ENDPOINTS, ApiMetrics

API_PREFIX = "/api/"


def endpoint_of(path: str) -> str:
    name = path.removeprefix(API_PREFIX)
    return name if path.startswith(API_PREFIX) and name in ENDPOINTS else "other"


class Guard:
    def __init__(
        self, app: ASGIApp, *, keys: ApiKeys, max_body_bytes: int, metrics: ApiMetrics
    ) -> None:
        self._app = app
        self._keys = keys
        self._max_body_bytes = max_body_bytes
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        endpoint = endpoint_of(scope["path"])
        started = time.perf_counter()
        status = 500

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, counted_send)
        finally:
            self._metrics.requests.labels(endpoint, str(status)).inc()
            self._metrics.seconds.labels(endpoint).observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not scope["path"].startswith(API_PREFIX):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        who = self._keys.authenticate(headers.get("x-api-key"), headers.get("authorization"))
        if isinstance(who, KeyProblem):
            await self._refuse(
                scope, receive, send, 401, "unauthenticated", who.message, who.reason,
                {"WWW-Authenticate": "apikey"},
            )  # fmt: skip
            return
        scope.setdefault("state", {})["api_key"] = who
        body = await self._read_body(headers, receive)
        if body is None:
            message = f"the body is over {self._max_body_bytes} bytes (HERALD_API_MAX_BODY_BYTES)"
            await self._refuse(scope, receive, send, 413, "too_large", message, "too_large", None)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # the disconnect, when the route waits for one
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        """The whole body, or None once it is known to be over the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the route's reply goes nowhere
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        reason: str,
        message: str,
        metric_reason: str,
        headers: dict[str, Any] | None,
    ) -> None:
        self._metrics.refused.labels(metric_reason).inc()
        response = JSONResponse(error_body(status, reason, message), status, headers=headers)
        await response(scope, receive, send)
