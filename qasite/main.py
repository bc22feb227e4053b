"""The FastAPI application: :func:`create_app` wires settings, storage, mail and the relay.

    app = create_app(settings)                 # relay -> Redis (settings.redis_url)
    app = create_app(settings, sink=my_sink)   # relay -> any EventSink (embedded bus, tests)

Start-up (the lifespan) fills in development secrets, opens the database, runs the
migrations, and starts the outbox relay; shutdown stops the relay and closes what it opened.
The relay's publisher is built from the settings shared with the fleet (Redis URL, key prefix,
history retention), so every event it publishes keeps the history the fleet serves. Without
``redis_url`` and without a *sink*, events are kept in the outbox (and a warning says so)
until the service runs with a bus.

Every route's request body is capped before it is read (:mod:`qasite.api.limits`: the uploads
at ``max_attachment_bytes``, the rest at ``max_request_body_bytes``); the lifespan state hands
uvicorn's protocols the header deadline and the connection bound (:mod:`qasite.api.server`,
whose :func:`~qasite.api.server.server_options` every command that serves this app uses).

``GET /healthz`` answers while the process serves; ``GET /readyz`` answers 200 only when the
database answers and, with Redis configured, Redis does too (503 and a short reason if not).
``GET /metrics`` is served on the HTTP port, or, with ``metrics_port`` set, only on a listener
of its own that every worker binds with SO_REUSEPORT (herald_contract/metrics_listener.py);
the HTTP port then answers ``/metrics`` with the 404 of an unknown path, any method, and
counts it in ``herald_qa_metrics_refused_total`` (issue 11, item 11).

``GET /docs`` is Swagger UI from files vendored in the package (``qasite/web/static/swagger-ui``,
npm's swagger-ui-dist, see its README) under a CSP that allows this origin only, never a CDN;
``/redoc`` is not served; ``api_docs = false`` turns ``/docs`` and ``/openapi.json`` off.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, Counter
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import Route

from herald_contract.cluster_client import any_command_client
from herald_contract.metrics_listener import MetricsListener
from publisher.publish import Publisher
from qasite.api.errors import install_handlers
from qasite.api.limits import BodyLimit
from qasite.api.page_front import PageFront
from qasite.api.routes import (
    account,
    answers,
    attachments,
    auth,
    comments,
    dev,
    drafts,
    inbox,
    questions,
    questions_list,
    socket_token,
    users,
    votes,
)
from qasite.api.server import GUARD_STATE_KEY, HttpGuard
from qasite.core.context import QAContext
from qasite.core.db import Database, migrate
from qasite.core.keys import with_secrets
from qasite.core.mail import Mailer
from qasite.core.metrics import (
    QAMetrics,
    Receive,
    RequestMetrics,
    Scope,
    Send,
    build_metrics,
    render,
)
from qasite.core.page_cache import LocalPages, PageCache
from qasite.core.passwords import Passwords
from qasite.core.settings import Settings
from qasite.domain.images import ImageStore
from qasite.domain.relay import EventSink, OutboxRelay
from qasite.web import pages

log = logging.getLogger(__name__)


def _noop() -> None:
    return None


def create_app(
    settings: Settings,
    *,
    sink: EventSink | None = None,
    migrate_on_start: bool = True,
    metrics_multiproc_dir: str | None = None,
) -> FastAPI:
    """The Q&A core for *settings*; the relay publishes to *sink*, else to ``redis_url``.

    *metrics_multiproc_dir*: set by ``serve --workers N`` (qasite/core/metrics.py), so that
    ``/metrics`` reports the sum over the workers.
    """

    metrics = build_metrics(multiproc_dir=metrics_multiproc_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        resolved = with_secrets(settings)
        async with AsyncExitStack() as stack:
            db, redis, relay = await _start_services(
                stack, resolved, sink, metrics, migrate_on_start=migrate_on_start
            )
            if settings.metrics_port is not None:
                listener = MetricsListener.start(
                    settings.metrics_host,
                    settings.metrics_port,
                    lambda: render(metrics),
                    reuse_port=True,  # every worker of the instance: any one answers the sum
                )
                stack.push_async_callback(asyncio.to_thread, listener.close)
                app.state.metrics_listener = listener
            app.state.relay = relay
            app.state.readiness = (db, redis)
            page_cache = await _page_cache(stack, resolved, metrics)
            app.state.qa = QAContext(
                settings=resolved,
                db=db,
                mailer=Mailer(resolved),
                passwords=Passwords.of(resolved),
                images=ImageStore(resolved.attachments_path),
                nudge_relay=relay.nudge if relay is not None else _noop,
                pages=page_cache,
            )
            # The lifespan state reaches uvicorn's protocols (qasite/api/server.py).
            yield {GUARD_STATE_KEY: HttpGuard.of(resolved, metrics.http_refused)}

    app = FastAPI(
        title="Herald Q&A core",
        version="1",
        summary="A small Q&A site backend whose every visible write reaches the sockets.",
        lifespan=lifespan,
        docs_url=None,  # served by _add_docs_routes: assets from the package, with a CSP
        redoc_url=None,  # ReDoc would load its script from a CDN
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    install_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    if settings.is_development:
        app.include_router(dev.router)
    app.include_router(pages.router)
    pages.install_error_pages(app, settings)
    app.add_middleware(PageFront, site=app, route=questions.PAGE_ROUTE)  # innermost
    app.add_middleware(
        BodyLimit,
        default_bytes=settings.max_request_body_bytes,
        by_route=dict.fromkeys(UPLOAD_ROUTES, settings.max_attachment_bytes),
        refused=metrics.http_refused,
    )
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: counts the 413s too
    app.state.metrics = metrics
    _add_health_routes(app, settings, metrics)
    if settings.api_docs:
        _add_docs_routes(app)
    return app


ROUTERS = (auth, account, questions_list, questions, answers, comments, votes, inbox, attachments,
           socket_token, users, drafts)  # fmt: skip
"""The API's routers, in the order the OpenAPI document lists them."""

UPLOAD_ROUTES = tuple(
    route.path
    for route in attachments.router.routes
    if isinstance(route, APIRoute) and "POST" in (route.methods or ())
)
"""The routes whose body is an image: capped at ``max_attachment_bytes``, not
``max_request_body_bytes``."""


async def _start_services(
    stack: AsyncExitStack,
    settings: Settings,
    sink: EventSink | None,
    metrics: QAMetrics,
    *,
    migrate_on_start: bool,
) -> tuple[Database, Redis | RedisCluster | None, OutboxRelay | None]:
    """Open the database, migrate, and start the relay on *sink* or on Redis; *stack* closes
    each in reverse order. Returns the database, the Redis client readiness pings (if any)
    and the relay (None without a bus: events stay in the outbox)."""
    db = Database.open(settings)
    stack.push_async_callback(db.close)
    if migrate_on_start:
        await migrate(db.engine)
    bus = sink
    redis: Redis | RedisCluster | None = None
    if bus is None and settings.redis_url is not None:
        publisher = _publisher(settings)
        stack.push_async_callback(publisher.close)
        bus = publisher
        redis = any_command_client(settings.redis_url, socket_timeout_s=settings.publish_timeout_s)
        stack.push_async_callback(redis.aclose)
    if bus is None:
        log.warning("no bus (HERALD_REDIS_URL unset, no in-process bus): events stay in the outbox")
        return db, redis, None
    relay = OutboxRelay(
        db,
        bus,
        poll_interval_s=settings.relay_poll_interval_s,
        retry_max_s=settings.relay_retry_max_s,
        batch_size=settings.relay_batch_size,
        metrics=metrics,
        retention_s=settings.outbox_retention_s,
        namespaces=settings.namespaces(),
    )
    relay.start()
    stack.push_async_callback(relay.stop)
    return db, redis, relay


async def _page_cache(
    stack: AsyncExitStack, settings: Settings, metrics: QAMetrics
) -> PageCache | None:
    """The question page cache of *settings* (None when off); its L2 in ``redis_url`` when
    configured, on a client of its own with ``page_cache_redis_timeout_s``."""
    if not settings.page_cache:
        return None
    redis: Redis | RedisCluster | None = None
    if settings.redis_url is not None and settings.page_cache_redis:
        redis = any_command_client(
            settings.redis_url, socket_timeout_s=settings.page_cache_redis_timeout_s
        )
        stack.push_async_callback(redis.aclose)
    local = LocalPages(
        max_entries=settings.page_cache_max_entries,
        max_bytes=settings.page_cache_max_bytes,
        ttl_s=settings.page_cache_ttl_s,
    )
    return PageCache(
        local,
        metrics.page_cache,
        redis=redis,
        key_prefix=settings.key_prefix,
        ttl_s=settings.page_cache_ttl_s,
    )


class _MetricsRefused:
    """``/metrics`` on the HTTP port while ``metrics_port`` serves it: the 404 an unknown path
    gets, for every method (an ASGI app, so that the route takes any method), counted in
    *refused* (a scrape target left on the public port, or someone probing)."""

    def __init__(self, refused: Counter) -> None:
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._refused.inc()
        raise HTTPException(404)


def _add_health_routes(app: FastAPI, settings: Settings, metrics: QAMetrics) -> None:
    """``/healthz`` (the process serves), ``/readyz`` (database and Redis answer), ``/metrics``."""

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        db, redis = app.state.readiness
        reason = await _not_ready(db, redis, settings.publish_timeout_s)
        if reason is not None:
            return JSONResponse({"status": "unready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    if settings.metrics_port is not None:
        # /metrics only on its own listener (the lifespan starts it): 404 here, counted.
        refused = _MetricsRefused(metrics.metrics_refused)
        app.router.routes.append(Route("/metrics", refused, include_in_schema=False))
        return

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(render(metrics), media_type=CONTENT_TYPE_LATEST)


SWAGGER_UI_DIR = Path(__file__).resolve().parent / "web" / "static" / "swagger-ui"
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
"""The vendored Swagger UI files /docs loads, with their media types."""


def _docs_page(app: FastAPI) -> tuple[bytes, str]:
    """The /docs page (FastAPI's Swagger UI page on the vendored files) and its CSP: scripts
    and styles from this origin only (plus the page's one inline script, by hash; Swagger UI
    sets inline styles), fetches to this origin only (the OpenAPI document)."""
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - API",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="data:,",
    )
    body = bytes(page.body)
    inline = body.rsplit(b"<script>", 1)[1].split(b"</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'sha256-{digest}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return body, csp


def _add_docs_routes(app: FastAPI) -> None:
    """``/docs`` and the two vendored files it loads; nothing from another origin."""
    body, csp = _docs_page(app)
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(body, headers=headers)

    @app.get("/static/swagger-ui/{name}", include_in_schema=False)
    async def swagger_ui_file(name: str) -> FileResponse:
        media_type = SWAGGER_UI_FILES.get(name)
        if media_type is None:
            raise HTTPException(status_code=404)
        return FileResponse(
            SWAGGER_UI_DIR / name,
            media_type=media_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"},
        )


def _publisher(settings: Settings) -> Publisher:
    """The relay's publisher: the fleet's key prefix, history retention and namespace file
    (shared names)."""
    return Publisher(
        settings.redis_url or "",
        prefix=settings.key_prefix,
        history_size=settings.history_size,
        history_ttl_s=settings.history_ttl_s,
        meta_ttl_s=settings.meta_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        socket_timeout_s=settings.publish_timeout_s,
        namespaces=settings.namespaces(),
    )


async def _not_ready(
    db: Database, redis: Redis | RedisCluster | None, timeout_s: float
) -> str | None:
    """None when the database answers and *redis* (if any) too; else a short reason."""
    try:
        async with asyncio.timeout(timeout_s), db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("not ready: the database does not answer: %s", exc)
        return "database unreachable"
    if redis is None:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            await redis.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("not ready: Redis does not answer: %s", exc)
        return "redis unreachable"
    return None
