"""The publish API's errors: one tree, the Q&A core's JSON shape, nothing internal sent.

    ApiError              {"error": {"code": <status>, "reason": <slug>, "message": <text>}}
    ├── Unauthenticated   401  unauthenticated: no key, a malformed header, or a wrong key
    ├── TooLarge          413  too_large: the body is over HERALD_API_MAX_BODY_BYTES
    ├── Invalid           422  invalid: with "problems" [{where, reason, problem}], every one
    │                          found (reasons invalid, invalid_channel, invalid_data,
    │                          invalid_event_id); nothing of the request was published
    └── Unavailable       503  unavailable: the bus (Redis) did not take a publication; with
                               Retry-After, and for a broadcast or batch "results" per item

Unknown paths are 404 not_found, other methods 405 method_not_allowed, anything unexpected
500 internal (logged once). Every refusal is counted in ``herald_api_refused_total{reason}``
(401s by missing_key, malformed_key or wrong_key).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from publish_api.metrics import ApiMetrics
from publish_api.schemas import ErrorBody

log = logging.getLogger(__name__)


class ApiError(Exception):
    status: ClassVar[int] = 400
    reason: ClassVar[str] = "bad_request"

    def __init_subclass__(cls, *, status: int, reason: str) -> None:
        super().__init_subclass__()
        cls.status, cls.reason = status, reason

    def __init__(
        self,
        message: str,
        *,
        metric_reason: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.message = message
        self.metric_reason = metric_reason or self.reason
        self.headers = headers
        self.extra = extra
        super().__init__(message)


class Unauthenticated(ApiError, status=401, reason="unauthenticated"):
    def __init__(self, message: str, *, metric_reason: str) -> None:
        super().__init__(
            message, metric_reason=metric_reason, headers={"WWW-Authenticate": "apikey"}
        )


class TooLarge(ApiError, status=413, reason="too_large"): ...


class Invalid(ApiError, status=422, reason="invalid"):
    def __init__(self, problems: list[dict[str, str]]) -> None:
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        super().__init__(
            summary or "invalid input", metric_reason=problems[0]["reason"], problems=problems
        )


class Unavailable(ApiError, status=503, reason="unavailable"):
    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, headers={"Retry-After": "1"}, **extra)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, a malformed header, or a wrong key"},
    413: {"model": ErrorBody, "description": "The body is over HERALD_API_MAX_BODY_BYTES"},
    422: {"model": ErrorBody, "description": "Invalid input; nothing was published"},
    503: {"model": ErrorBody, "description": "The bus did not take a publication; retry"},
}


def error_body(status: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": status, "reason": reason, "message": message, **extra}}


def error_response(
    metrics: ApiMetrics,
    status: int,
    reason: str,
    message: str,
    *,
    metric_reason: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    metrics.refused.labels(metric_reason or reason).inc()
    return JSONResponse(error_body(status, reason, message, **extra), status, headers=headers)


def _where(loc: Any) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


def install_handlers(app: FastAPI, metrics: ApiMetrics) -> None:
    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(
            metrics,
            exc.status,
            exc.reason,
            exc.message,
            metric_reason=exc.metric_reason,
            headers=exc.headers,
            **exc.extra,
        )

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"where": _where(e.get("loc", ())), "reason": "invalid", "problem": str(e["msg"])}
            for e in exc.errors()
        ]
        return await api_error(_request, Invalid(problems or [_NOT_JSON]))

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            return await api_error(_request, Invalid([_NOT_JSON]))
        reasons = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        reason = reasons.get(exc.status_code, "bad_request")
        return error_response(
            metrics,
            exc.status_code,
            reason,
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("publish API: unexpected error", exc_info=exc)
        return error_response(metrics, 500, "internal", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


_NOT_JSON = {"where": "body", "reason": "invalid", "problem": "the body is not JSON"}
