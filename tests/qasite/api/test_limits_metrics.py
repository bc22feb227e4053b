"""Issue 11, item 3: every label of the Q&A core's HTTP metrics comes from a bounded set.

The review sent 2,000 requests with random 4,001-character methods through uvicorn's h11
parser (what the image installs) and ``/metrics`` grew from 3.5 KB to 16 MB. Here: junk
methods on real and unknown paths, and junk paths, through a raw socket (httpx refuses such
methods), then the series of ``herald_qa_http_requests_total`` are counted.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from qasite.core.metrics import KNOWN_METHODS
from qasite.core.settings import Settings
from qasite.main import create_app
from tests.qasite.api.limits_support import (
    body_of,
    exchange,
    request,
    samples,
    serving,
    sqlite_settings,
)

JUNK_REQUESTS = 150
"""Junk requests of each kind: enough that per-value labels would show, bounded in time."""


def _junk_method() -> str:
    # A token h11 accepts (RFC 9110 tchar), 4,001 characters as in the review.
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(4001))


def _route_templates() -> set[str]:
    """Every route template of the app (FastAPI keeps included routers as branches)."""
    routes = list(create_app(Settings()).routes)
    templates = set()
    while routes:
        route = routes.pop()
        if isinstance(path := getattr(route, "path", None), str):
            templates.add(path)
        routes.extend(getattr(getattr(route, "original_router", None), "routes", ()))
    return templates


async def test_junk_methods_and_paths_fold_into_other_and_unmatched(
    tmp_path: Path, sqlite_template: Path
) -> None:
    settings = sqlite_settings(tmp_path, sqlite_template)
    async with serving(settings, "h11") as port:
        for i in range(JUNK_REQUESTS):
            path = ("/api/questions", "/healthz", f"/nowhere/{i}")[i % 3]
            await exchange(port, request(_junk_method(), path))
            await exchange(port, request("GET", f"/junk/{secrets.token_hex(16)}?q={i}"))
        metrics = body_of(await exchange(port, request("GET", "/metrics"))).decode()

    series = samples(metrics, "herald_qa_http_requests_total")
    methods = {labels["method"] for labels, _ in series}
    routes = {labels["route"] for labels, _ in series}
    assert methods <= KNOWN_METHODS | {"other"}, sorted(m[:20] for m in methods)
    assert "other" in methods
    assert routes <= _route_templates() | {"unmatched"}, sorted(r[:60] for r in routes)
    assert sum(value for _, value in series) >= 2 * JUNK_REQUESTS
    assert len(series) <= 12, [labels for labels, _ in series]
    assert len(metrics) < 64 * 1024
