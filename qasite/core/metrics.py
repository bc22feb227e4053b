"""Every metric the Q&A core exports, defined in one place; served at ``GET /metrics``.

Built once per application by :func:`build_metrics` and passed down (the relay counts what
it publishes, the HTTP middleware counts requests); :func:`render` is the ``/metrics`` body.

With ``herald-qa serve --workers N`` the workers share one port, so a scrape reaches any one
of them. The serve command therefore runs prometheus-client in multiprocess mode, as the
socket fleet does (socketsrv/fleet.py): :func:`multiprocess_dir` creates a fresh
``PROMETHEUS_MULTIPROC_DIR`` before the workers start (prometheus-client reads it when it is
imported, so it must be in the environment the workers inherit) and removes it at exit; every
worker writes its values there, and :func:`render` sums them, so whichever worker answers
reports the whole service. One process (embedded mode, tests) keeps a plain registry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
    namespace_published: Counter
    outbox_publish_failures: Counter
    outbox_dropped: Counter
    outbox_lag: Gauge
    events_degraded: Counter
    dev_mailbox_refused: Counter
    metrics_refused: Counter
    http_refused: Counter
    auth_refused: Counter
    uploads_refused: Counter
    access_tokens_refused: Counter
    page_cache: Counter
    registry: CollectorRegistry
    multiproc_dir: str | None = None
    """Where the workers write their values (multiprocess mode); None: this process only."""


def build_metrics(
    registry: CollectorRegistry | None = None, *, multiproc_dir: str | None = None
) -> QAMetrics:
    """Create every metric in *registry* (a fresh one when None).

    *multiproc_dir*: the ``PROMETHEUS_MULTIPROC_DIR`` the serve command set up for its
    workers; :func:`render` then reports the sum over all of them.
    """
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
        namespace_published=Counter(
            "herald_qa_namespace_publications",
            "Outbox events accepted by the bus, by the channel's namespace (a kind of the "
            "namespace file: a bounded set)",
            ["namespace"],
            registry=reg,
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
            # Every worker runs a relay over the same outbox: the service lags as much as
            # its most behind look; a sum would count one old event once per worker. "live":
            # a worker that is gone stops counting (see _forget_dead_workers).
            multiprocess_mode="livemax",
        ),
        events_degraded=Counter(
            "herald_qa_events_degraded",
            "Events published without a post's body (body_html null, reload true): the event "
            "would have been over the bus's 64 KiB",
            registry=reg,
        ),
        dev_mailbox_refused=Counter(
            "herald_qa_dev_mailbox_refused",
            "GET /dev/mailbox answered 404: off (not enabled, or production) or not_loopback",
            ["reason"],
            registry=reg,
        ),
        metrics_refused=Counter(
            "herald_qa_metrics_refused",
            "Requests for /metrics on the HTTP port answered 404: metrics_port serves it",
            registry=reg,
        ),
        http_refused=Counter(
            "herald_qa_http_refused",
            "HTTP requests and connections refused by a limit (docs/qa-core.md#configuration): "
            "body_too_large (413), header_timeout (408 or closed), too_many_connections (503)",
            ["reason"],
            registry=reg,
        ),
        auth_refused=Counter(
            "herald_qa_auth_refused",
            "Logins and registrations refused before any password work: account_limit and "
            "address_limit (429), argon2_busy (503, every hashing slot taken)",
            ["reason"],
            registry=reg,
        ),
        uploads_refused=Counter(
            "herald_qa_uploads_refused",
            "Image uploads refused by a limit: too_many_pixels (413, before decoding), "
            "daily_quota (429, uploads_per_day), storage_quota (413, upload_quota_bytes)",
            ["reason"],
            registry=reg,
        ),
        access_tokens_refused=Counter(
            "herald_qa_access_tokens_refused",
            "Requests answered 401 for a valid access token on the deny list: revoked (logout)",
            ["reason"],
            registry=reg,
        ),
        page_cache=Counter(
            "herald_qa_page_cache",
            "Question page cache lookups by level (l1: the process, l2: Redis) and result: hit, "
            "miss (absent), stale (older versions than the database's: rebuilt), bad (unreadable "
            "bytes in Redis: dropped), error (Redis did not answer: counted as a miss)",
            ["level", "result"],
            registry=reg,
        ),
        registry=reg,
        multiproc_dir=multiproc_dir,
    )


def render(metrics: QAMetrics) -> bytes:
    """The Prometheus text exposition: this process, or every worker in multiprocess mode."""
    if metrics.multiproc_dir is None:
        return generate_latest(metrics.registry)
    _forget_dead_workers(metrics.multiproc_dir)
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=metrics.multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(reg)


def _forget_dead_workers(multiproc_dir: str) -> None:
    """Drop the live gauges of workers that died (uvicorn replaces them without telling
    prometheus-client); their counters stay, so the sums never go backwards."""
    for path in Path(multiproc_dir).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not _is_running(pid):
            multiprocess.mark_process_dead(pid, multiproc_dir)  # type: ignore[no-untyped-call]


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def multiprocess_dir(env: MutableMapping[str, str]) -> Iterator[str]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` in *env* (the environment the workers about to
    start inherit) for as long as the block runs; removed, and *env* restored, at exit."""
    previous = env.get(MULTIPROC_ENV)
    path = tempfile.mkdtemp(prefix="herald-qa-metrics-")
    env[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if previous is None:
            env.pop(MULTIPROC_ENV, None)
        else:
            env[MULTIPROC_ENV] = previous


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as themselves; any other token a client sends is labelled "other"."""


def _route_of(scope: Scope) -> str:
    """The matched route's template (a fixed set), else "unmatched": never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _method_of(scope: Scope) -> str:
    """The request method if it is one of :data:`KNOWN_METHODS`, else "other".

    Label values must come from a bounded set: h11 accepts any token as a method, and 2,000
    random 4,001-character methods grew ``/metrics`` to 16 MB (issue 11, item 3).
    """
    method = scope.get("method")
    return method if method in KNOWN_METHODS else "other"


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by its route template, known
    method and status; every label comes from a bounded set."""

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
            self._metrics.http_requests.labels(route, _method_of(scope), str(status)).inc()
            self._metrics.http_request_duration.labels(route).observe(time.perf_counter() - started)
