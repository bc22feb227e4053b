"""Helpers for the publish API's tests: an app on a target, a client that speaks to it."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI

from herald_contract.memory_bus import MemoryBus
from publish_api.app import create_app
from publish_api.auth import ApiKeys
from publish_api.metrics import ApiMetrics, build_metrics
from publish_api.targets import PublishTarget

KEY = "test-key-0123456789abcdef"
NEW_KEY = "test-key-new-9876543210fedcba"
AUTH = {"X-API-Key": KEY}


@dataclass
class Listener:
    """A bus listener that keeps every live envelope, by channel."""

    seen: dict[str, list[bytes]] = field(default_factory=dict)

    def on_publication(self, channel: str, envelope: bytes) -> None:
        self.seen.setdefault(channel, []).append(envelope)

    def on_bus_lost(self) -> None: ...

    def on_bus_restored(self) -> None: ...


async def started_memory_bus() -> MemoryBus:
    bus = MemoryBus()
    await bus.start(Listener())
    return bus


def api(
    target: PublishTarget,
    keys: tuple[tuple[str, str], ...] = (("billing", KEY),),
    *,
    max_body_bytes: int = 64 * 1024,
) -> tuple[FastAPI, ApiMetrics]:
    metrics = build_metrics()
    app = create_app(target, ApiKeys(keys), max_body_bytes=max_body_bytes, metrics=metrics)
    return app, metrics


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def sample(metrics: ApiMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0
