"""The FastAPI application: :func:`create_app` wires settings, storage, mail and the relay.

    app = create_app(settings)                 # relay -> Redis (settings.redis_url)
    app = create_app(settings, sink=my_sink)   # relay -> any EventSink (embedded bus, tests)

Start-up (the lifespan) fills in development secrets, opens the database, runs the
migrations, and starts the outbox relay; shutdown stops the relay and closes what it opened.
Without ``redis_url`` and without a *sink*, events are kept in the outbox (and a warning
says so) until the service runs with a bus.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST

from publisher.publish import Publisher
from qasite.api.errors import install_handlers
from qasite.api.routes import (
    answers,
    attachments,
    auth,
    comments,
    dev,
    inbox,
    questions,
    questions_list,
    socket_token,
    votes,
)
from qasite.core.context import QAContext
from qasite.core.db import Database, migrate
from qasite.core.keys import with_secrets
from qasite.core.mail import Mailer
from qasite.core.metrics import RequestMetrics, build_metrics, render
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
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = with_secrets(settings)
        async with AsyncExitStack() as stack:
            db = Database.open(resolved)
            stack.push_async_callback(db.close)
            if migrate_on_start:
                await migrate(db.engine)
            bus = sink
            if bus is None and resolved.redis_url is not None:
                publisher = Publisher(
                    resolved.redis_url,
                    prefix=resolved.key_prefix,
                    socket_timeout_s=resolved.publish_timeout_s,
                )
                stack.push_async_callback(publisher.close)
                bus = publisher
            relay: OutboxRelay | None = None
            if bus is None:
                log.warning(
                    "no bus (REDIS_URL unset, no in-process bus): events stay in the outbox"
                )
            else:
                relay = OutboxRelay(
                    db,
                    bus,
                    poll_interval_s=resolved.relay_poll_interval_s,
                    retry_max_s=resolved.relay_retry_max_s,
                    batch_size=resolved.relay_batch_size,
                    metrics=metrics,
                    retention_s=resolved.outbox_retention_s,
                )
                relay.start()
                stack.push_async_callback(relay.stop)
            app.state.relay = relay
            app.state.qa = QAContext(
                settings=resolved,
                db=db,
                mailer=Mailer(resolved),
                passwords=Passwords.of(resolved),
                images=ImageStore(resolved.attachments_path),
                nudge_relay=relay.nudge if relay is not None else _noop,
            )
            yield

    app = FastAPI(
        title="Herald Q&A core",
        version="1",
        summary="A small Q&A site backend whose every visible write reaches the sockets.",
        lifespan=lifespan,
    )
    install_handlers(app)
    for module in (
        auth,
        questions_list,
        questions,
        answers,
        comments,
        votes,
        inbox,
        attachments,
        socket_token,
    ):
        app.include_router(module.router)
    if settings.is_development:
        app.include_router(dev.router)
    app.include_router(pages.router)

    app.add_middleware(RequestMetrics, metrics=metrics)
    app.state.metrics = metrics

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(render(metrics), media_type=CONTENT_TYPE_LATEST)

    return app
