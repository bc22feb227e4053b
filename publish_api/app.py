"""The FastAPI app: three publish operations, ``/metrics`` and ``/healthz``.

    app = create_app(target, ApiKeys([("billing", "...")]), max_body_bytes=1 << 20)

*target* is a :class:`publish_api.targets.PublishTarget` (a :class:`publisher.Publisher`, or
a :class:`publish_api.targets.BusTarget` on the in-process bus); the app never closes it.
Every publication of a request is checked before any is made (a 422 publishes nothing); a
broadcast's or batch's publications on one channel are made in request order, different
channels in parallel (at most :data:`PARALLEL` at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request, Security
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, JsonValue, ValidationError

from herald_contract.errors import InvalidChannel, InvalidPayload, PublishFailed
from herald_contract.namespaces import MAX_CHANNEL_LENGTH, Namespaces
from herald_contract.namespaces_file import default_namespaces
from publish_api.auth import ApiKeys
from publish_api.errors import ERROR_RESPONSES, Invalid, Unavailable, install_handlers
from publish_api.grammar import channel_pattern
from publish_api.guard import Guard
from publish_api.metrics import ApiMetrics, build_metrics
from publish_api.schemas import (
    BatchRequest,
    BroadcastRequest,
    ErrorInfo,
    ItemFailed,
    Published,
    PublishedMany,
    PublishRequest,
)
from publish_api.targets import PublishTarget

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

PARALLEL = 16
"""Channels of one broadcast or batch published at once."""

NOT_TAKEN = (
    "the bus did not take the publication (it may or may not have been made): retry with the"
    " same event id"
)


@dataclass(frozen=True, slots=True)
class Item:
    where_channel: str
    where_data: str
    channel: str
    data: JsonValue
    event_id: str


@dataclass(frozen=True, slots=True)
class Checked:
    channel: str
    packed: bytes
    event_id: str


X_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="<key>")
AUTHORIZATION = APIKeyHeader(
    name="Authorization",
    scheme_name="AuthorizationApiKey",
    auto_error=False,
    description="apikey <key>",
)


async def caller(
    request: Request,
    _x_api_key: Annotated[str | None, Security(X_API_KEY)],
    _authorization: Annotated[str | None, Security(AUTHORIZATION)],
) -> str:
    """The key's name; checked by the Guard before the body was read (the two parameters
    put the headers in the OpenAPI document). A coroutine: a plain function dependency would
    run in a thread pool, which cost 75% of a request's CPU time (measured)."""
    return str(request.state.api_key)


Caller = Annotated[str, Depends(caller)]


def create_app(
    target: PublishTarget,
    keys: ApiKeys,
    *,
    max_body_bytes: int,
    metrics: ApiMetrics | None = None,
    namespaces: Namespaces | None = None,
) -> FastAPI:
    """*namespaces* (None: the shipped file) gives the document's channel ``pattern``; the
    checks themselves are *target*'s."""
    metrics = metrics if metrics is not None else build_metrics()
    channel = {
        "pattern": channel_pattern(namespaces or default_namespaces()),
        "maxLength": MAX_CHANNEL_LENGTH,
    }
    app = FastAPI(
        title="Herald publish API",
        version="1",
        description="Publish to Herald channels from any language (docs/publish-api.md).",
        docs_url=None,  # no Swagger UI: FastAPI's loads its scripts from a CDN
        redoc_url=None,
    )
    install_handlers(app, metrics)
    app.add_middleware(Guard, keys=keys, max_body_bytes=max_body_bytes, metrics=metrics)

    def check(items: Sequence[Item]) -> list[Checked]:
        checked, problems = [], []
        for item in items:
            try:
                packed = target.check(item.channel, item.data, event_id=item.event_id)
            except InvalidChannel as exc:
                problems.append(_problem(item.where_channel, "invalid_channel", exc.why))
            except InvalidPayload as exc:
                problems.append(_problem(item.where_data, "invalid_data", exc.why))
            else:
                checked.append(Checked(item.channel, packed, item.event_id))
        if problems:
            raise Invalid(problems)
        return checked

    async def publish_one(key: str, item: Checked) -> Published:
        try:
            result = await target.publish_packed(item.channel, item.packed, event_id=item.event_id)
        except PublishFailed as exc:
            metrics.publications.labels(key, "failed").inc()
            log.warning("publish API (key %s): %s", key, exc)
            raise
        metrics.publications.labels(key, "duplicate" if result.duplicate else "published").inc()
        return Published(
            channel=item.channel,
            epoch=result.position.epoch,
            offset=result.position.offset,
            duplicate=result.duplicate,
        )

    async def publish_many(key: str, items: list[Checked]) -> PublishedMany:
        results: list[Published | ItemFailed | None] = [None] * len(items)
        by_channel: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_channel.setdefault(item.channel, []).append(i)
        gate = asyncio.Semaphore(PARALLEL)
        failed = False

        async def run(indices: list[int]) -> None:
            nonlocal failed
            async with gate:
                for i in indices:
                    if failed:
                        results[i] = _failed(items[i].channel, "not attempted: another failed")
                        continue
                    try:
                        results[i] = await publish_one(key, items[i])
                    except PublishFailed:
                        failed = True
                        results[i] = _failed(items[i].channel, NOT_TAKEN)

        await asyncio.gather(*(run(indices) for indices in by_channel.values()))
        done = [r for r in results if r is not None]
        if failed:
            raise Unavailable(
                "some publications were not made: see results; retry with the same event ids",
                results=[r.model_dump() for r in done],
            )
        return PublishedMany(results=[r for r in done if isinstance(r, Published)])

    @app.post(
        "/api/publish",
        operation_id="publish",
        summary="Publish one publication",
        response_model=Published,
        responses=ERROR_RESPONSES,
        openapi_extra=request_body(PublishRequest),
    )
    async def publish(request: Request, key: Caller) -> Response:
        body = await parsed(request, PublishRequest)
        (item,) = check([Item("channel", "data", body.channel, body.data, body.event_id)])
        try:
            return as_json(await publish_one(key, item))
        except PublishFailed:
            raise Unavailable(NOT_TAKEN) from None

    @app.post(
        "/api/broadcast",
        operation_id="broadcast",
        summary="Publish the same data to many channels, each its own publication",
        response_model=PublishedMany,
        responses=ERROR_RESPONSES,
        openapi_extra=request_body(BroadcastRequest),
    )
    async def broadcast(request: Request, key: Caller) -> Response:
        body = await parsed(request, BroadcastRequest)
        first: dict[str, int] = {}
        repeats = []
        for i, channel in enumerate(body.channels):
            if channel in first:
                why = f"the channel is given twice (also channels.{first[channel]})"
                repeats.append(_problem(f"channels.{i}", "invalid", why))
            first.setdefault(channel, i)
        items = [
            Item(f"channels.{i}", f"data (for channels.{i})", channel, body.data, body.event_id)
            for i, channel in enumerate(body.channels)
        ]
        try:
            checked = check(items)
        except Invalid as exc:
            raise Invalid(repeats + exc.extra["problems"]) from None
        if repeats:
            raise Invalid(repeats)
        return as_json(await publish_many(key, checked))

    @app.post(
        "/api/batch",
        operation_id="batch",
        summary="Publish many publications, in order per channel",
        response_model=PublishedMany,
        responses=ERROR_RESPONSES,
        openapi_extra=request_body(BatchRequest),
    )
    async def batch(request: Request, key: Caller) -> Response:
        body = await parsed(request, BatchRequest)
        items = [
            Item(
                f"publications.{i}.channel", f"publications.{i}.data", p.channel, p.data, p.event_id
            )
            for i, p in enumerate(body.publications)
        ]
        return as_json(await publish_many(key, check(items)))

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the request models the routes parse themselves."""
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            schemas["PublishRequest"]["properties"]["channel"].update(channel)
            channels = schemas["BroadcastRequest"]["properties"]["channels"]
            channels["items"].update(channel)
            channels["uniqueItems"] = True
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    return app


REQUEST_MODELS: tuple[type[BaseModel], ...] = (PublishRequest, BroadcastRequest, BatchRequest)


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses *model* itself (:func:`parsed`)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def parsed(request: Request, model: type[M]) -> M:
    """The body as *model*, or :class:`Invalid` naming every problem.

    The routes parse their bodies themselves rather than through a FastAPI body parameter:
    the body is JSON whatever its Content-Type says (``curl -d`` sends a form type), as
    Centrifugo's API takes it, and pydantic's JSON parser skips FastAPI's dependency
    machinery (measured: a third of a request's CPU time).
    """
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise Invalid(
            [
                _problem(_where(e.get("loc", ())), "invalid", str(e["msg"]))
                for e in exc.errors(include_url=False)
            ]
        ) from None


def _where(loc: Sequence[object]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def as_json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


def _problem(where: str, reason: str, why: str) -> dict[str, str]:
    return {"where": where, "reason": reason, "problem": why}


def _failed(channel: str, message: str) -> ItemFailed:
    return ItemFailed(
        channel=channel, error=ErrorInfo(code=503, reason="unavailable", message=message)
    )
