"""The Q&A core's HTTP errors: one tree, one JSON shape, nothing internal sent to a client.

    ApiError                 {"error": {"code": <status>, "reason": <slug>, "message": <text>}}
    ├── Unauthenticated      401  no or bad credentials
    ├── Forbidden            403  authenticated, but not allowed (not yours, not verified, ...)
    ├── NotFound             404  no such question, answer, comment, attachment, ...
    ├── Conflict             409  the request contradicts the current state
    ├── PayloadTooLarge      413  an upload over max_attachment_bytes
    ├── UnsupportedMedia     415  an upload that is not an image we accept
    ├── TooManyAttempts      429  a login or registration over its limit (with Retry-After)
    ├── Busy                 503  every password-hashing slot taken (with Retry-After)
    └── Invalid              422  well-formed but unacceptable input (FastAPI's own 422s too)
        └── InvalidCursor    422  a search cursor we did not issue (reason "bad_cursor")

:func:`install_handlers` maps these, the domain's errors (:data:`DOMAIN_ANSWERS`: not found 404,
not allowed 403, invalid input 422), FastAPI's validation errors, integrity errors (a lost
race on a unique constraint: 409) and anything unexpected (logged once, answered 500 with no
detail) to the same shape; a transient database failure (deadlock, lock timeout) answers 503 with
``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from qasite.domain import errors as domain
from qasite.domain.search import BadCursor

log = logging.getLogger(__name__)


class ApiError(Exception):
    """The root; each subclass names its answer: ``class X(ApiError, status=..., reason=...)``."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "bad_request"

    def __init_subclass__(cls, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init_subclass__()
        cls.status = cls.status if status is None else status
        cls.reason = cls.reason if reason is None else reason

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        self.message = message
        self.headers = headers
        super().__init__(message)


class Unauthenticated(ApiError, status=401, reason="unauthenticated"):
    def __init__(
        self, message: str = "log in first (Authorization: Bearer <access token>)"
    ) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError, status=403, reason="forbidden"): ...


class NotFound(ApiError, status=404, reason="not_found"): ...


class Conflict(ApiError, status=409, reason="conflict"): ...


class PayloadTooLarge(ApiError, status=413, reason="too_large"): ...


class UnsupportedMedia(ApiError, status=415, reason="unsupported_media_type"): ...


class TooManyAttempts(ApiError, status=429, reason="too_many_attempts"):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class Busy(ApiError, status=503, reason="busy"):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class Invalid(ApiError, status=422, reason="invalid"): ...


class InvalidCursor(Invalid, reason="bad_cursor"):
    """A search cursor this service did not issue for this query."""


DOMAIN_ANSWERS: dict[type[domain.DomainError], type[ApiError]] = {
    domain.DomainError: ApiError,
    domain.NotFound: NotFound,
    domain.NotAllowed: Forbidden,
    domain.InvalidInput: Invalid,
    BadCursor: InvalidCursor,
}
"""How each domain error is answered: the entry of its nearest class (subclasses first)."""


def answer_for(exc: domain.DomainError) -> type[ApiError]:
    """The :class:`ApiError` class whose status and reason answer *exc*."""
    return next(DOMAIN_ANSWERS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_ANSWERS)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in, or the token is invalid or expired"},
    403: {"description": "Not allowed: not yours, or your email is not verified"},
    404: {"description": "No such resource"},
    409: {"description": "Conflicts with the current state"},
    422: {"description": "Invalid input"},
}
"""The error answers shared by every route (documented in the OpenAPI schema)."""


def error_body(status: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": status, "reason": reason, "message": message, **extra}}


def _reply(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(status, reason, message, **extra), status, headers=headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _reply(exc.status, exc.reason, exc.message, exc.headers)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, domain.DomainError)
    answer = answer_for(exc)
    return _reply(answer.status, answer.reason, exc.message)


TAG_WORDS = (
    "a tag is 1 to 35 lowercase letters, digits and the characters + # . - "
    "(it starts with a letter, a digit or a dot)"
)


def _problem(error: Any) -> str:
    """What is wrong, in words: a pattern a value missed is described, never shown."""
    kind, context = error.get("type"), error.get("ctx") or {}
    if kind in ("too_short", "too_long") and isinstance(error.get("input"), str):
        # Text fields are validated after a function, so pydantic counts "items".
        bound = "at least" if kind == "too_short" else "at most"
        length = context.get("min_length" if kind == "too_short" else "max_length")
        return f"should have {bound} {length} characters"
    if kind != "string_pattern_mismatch":
        return str(error.get("msg", "invalid"))
    if "tags" in error.get("loc", ()):
        return f"{str(error.get('input'))[:40]!r} is not a tag: {TAG_WORDS}"
    return "contains characters that are not allowed here"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "where": ".".join(str(part) for part in error.get("loc", ())),
            "problem": _problem(error),
        }
        for error in exc.errors()
    ]
    summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
    return _reply(422, "invalid", summary or "invalid input", problems=problems)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this path. Starlette's 405 names those of
    the first route whose path matched, which is one of several when two routers share a path
    (``GET /api/questions`` lists, ``POST`` asks: found by schemathesis, ``Allow: GET``)."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI reads a body that is not UTF-8 as a 400 of its own; like any other body
        # that is not JSON (FastAPI's json_invalid), it is invalid input (found by schemathesis).
        return _reply(422, "invalid", "body: the body is not JSON (not even UTF-8 text)")
    reasons = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return _reply(
        exc.status_code,
        reasons.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers or None,
    )


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity error answered 409: %s", type(exc.__cause__ or exc).__name__)
    return _reply(409, "conflict", "the request conflicts with a concurrent change; retry")


TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
"""PostgreSQL: serialization failure, deadlock detected, lock not available."""


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(exc, OperationalError) or sqlstate in TRANSIENT_SQLSTATES:
        # A lost lock race (deadlock, SQLite busy past its timeout): nothing was written.
        log.warning(
            "transient database error on %s %s: %s",
            request.method,
            request.url.path,
            sqlstate or type(exc.orig).__name__,
        )
        return _reply(503, "busy", "the database is busy; retry shortly", {"Retry-After": "1"})
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _reply(500, "internal", "internal error")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(domain.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
