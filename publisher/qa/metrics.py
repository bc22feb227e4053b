"""Every metric the Q&A core exports, defined in one place; served at ``GET /metrics``.

Built once per application by :func:`build_metrics` and passed down (the relay counts what
it publishes, the HTTP middleware counts requests). With ``herald-qa serve --workers N``
each worker has its own registry: scrape each, or run one worker per port.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QAMetrics:
    http_requests: Counter
    http_request_duration: Histogram
    outbox_published: Counter
    outbox_publish_failures: Counter
    outbox_dropped: Counter
    outbox_lag: Gauge
    registry: CollectorRegistry


def build_metrics(registry: CollectorRegistry | None = None) -> QAMetrics:
    """Create every metric in *registry* (a fresh one when None)."""
    reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
    return QAMetrics(
        http_requests=Counter(
            "herald_qa_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=reg,
        ),
        http_request_duration=Histogram(
            "herald_qa_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        ),
        outbox_published=Counter(
            "herald_qa_outbox_published", "Outbox events accepted by the bus", registry=reg
        ),
        outbox_publish_failures=Counter(
            "herald_qa_outbox_publish_failures",
            "Relay attempts that failed (bus or database down); the events wait and are retried",
            registry=reg,
        ),
        outbox_dropped=Counter(
            "herald_qa_outbox_dropped",
            "Outbox rows the bus can never take (invalid channel or payload), dropped",
            registry=reg,
        ),
        outbox_lag=Gauge(
            "herald_qa_outbox_lag_seconds",
            "Age of the oldest unpublished outbox event at the relay's last look (0: none)",
            registry=reg,
        ),
        registry=reg,
    )


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: QAMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_and_record)
        finally:
            route = _route_of(scope)
            self._metrics.http_requests.labels(route, scope["method"], str(status)).inc()
            self._metrics.http_request_duration.labels(route).observe(time.perf_counter() - started)
