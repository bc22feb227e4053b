"""The plain HTTP paths a worker answers on its websocket port: health, readiness, metrics.

    /healthz   200 while the process serves at all (liveness)
    /readyz    200 while the worker serves and its bus is live, else 503 (readiness); 503
               from SIGTERM on, also during the drain's grace while it still accepts
    /metrics   the Prometheus text exposition (summed over the fleet in multiprocess mode);
               404 when ``metrics_port`` moves it to a listener of its own
               (herald_contract.metrics_listener: the worker's, or the supervisor's with a fleet),
               each such 404 counted in ``herald_metrics_refused_total`` (no labels: someone
               is scraping the public port, a leftover target or a probe)

Every other path goes on to the websocket handshake. Responses close the connection.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from socketsrv.metrics import Metrics, render

_TEXT = "text/plain; charset=utf-8"


class HttpHandler(Protocol):
    def __call__(self, request: Request) -> Response | None:
        """A response for a plain HTTP path, or None to go on with the websocket handshake."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The :class:`HttpHandler` of one worker."""

    is_ready: Callable[[], bool]
    metrics: Metrics
    multiproc_dir: str | None
    """prometheus-client's multiprocess directory when several workers share the port."""
    metrics_elsewhere: bool = False
    """``metrics_port`` is set: /metrics is served on that listener only (404 here)."""

    def __call__(self, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/healthz":
            return http_response(200, b"ok\n", _TEXT)
        if path == "/readyz":
            if self.is_ready():
                return http_response(200, b"ready\n", _TEXT)
            return http_response(503, b"not ready\n", _TEXT)
        if path == "/metrics":
            if self.metrics_elsewhere:
                self.metrics.metrics_refused.inc()
                return http_response(404, b"not found\n", _TEXT)
            return http_response(200, render(self.metrics, self.multiproc_dir), CONTENT_TYPE_LATEST)
        return None


def http_response(status: int, body: bytes, content_type: str) -> Response:
    """A plain HTTP response that is not cached and closes the connection."""
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)
