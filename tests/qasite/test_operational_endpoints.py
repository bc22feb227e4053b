"""Operational endpoints of the Q&A core (issue 11, item 11): /docs from the package under
a CSP that names no other origin, /redoc gone, /openapi.json and /docs switchable, and
/metrics moved to a listener of its own by ``metrics_port`` (one process and ``serve
--workers 2``)."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from pathlib import Path

from qasite.core.settings import Settings
from tests.qasite.core.test_metrics_workers import sample, start_service, stop, wait_until
from tests.qasite.support import QA, qa_settings, running_qa
from tests.support.redis_server import free_port


def scrape(port: int, path: str = "/metrics") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _settings(tmp_path: Path, **changes: object) -> Settings:
    return qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}").replace(**changes)


async def test_docs_load_only_files_of_this_origin_under_a_strict_csp(tmp_path: Path) -> None:
    async with running_qa(_settings(tmp_path)) as qa:
        await _docs_are_local(qa)


async def _docs_are_local(qa: QA) -> None:
    answer = await qa.client.get("/docs")
    assert answer.status_code == 200
    page = answer.text
    assert re.findall(r"https?://", page) == []  # no CDN, no external favicon
    csp = answer.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)", csp)
    assert "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page):
        got = await qa.client.get(asset)
        assert got.status_code == 200, asset
        assert got.headers["x-content-type-options"] == "nosniff"
        assert len(got.content) > 10_000
    assert (await qa.client.get("/static/swagger-ui/LICENSE")).status_code == 404
    assert (await qa.client.get("/redoc")).status_code == 404  # it loads its script from a CDN
    assert (await qa.client.get("/openapi.json")).status_code == 200


async def test_api_docs_off_hides_docs_and_the_schema(tmp_path: Path) -> None:
    async with running_qa(_settings(tmp_path, api_docs=False)) as qa:
        assert (await qa.client.get("/docs")).status_code == 404
        assert (await qa.client.get("/openapi.json")).status_code == 404
        assert (await qa.client.get("/healthz")).status_code == 200


async def test_metrics_refused_on_the_http_port_are_counted_and_look_like_any_404(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with running_qa(_settings(tmp_path, metrics_port=port)) as qa:
        unknown = await qa.client.get("/no-such-path")
        for method in ("GET", "HEAD", "POST", "DELETE"):
            refused = await qa.client.request(method, "/metrics")
            assert refused.status_code == 404, method
            if method == "GET":
                assert refused.json() == unknown.json()
        _, body = await asyncio.to_thread(scrape, port)
        assert sample(body, "herald_qa_metrics_refused_total") == [4.0]


async def test_metrics_served_on_the_http_port_count_no_refusal(tmp_path: Path) -> None:
    async with running_qa(_settings(tmp_path)) as qa:
        answer = await qa.client.get("/metrics")
        assert answer.status_code == 200
        assert sample(answer.content, "herald_qa_metrics_refused_total") == [0.0]


async def test_metrics_port_moves_metrics_off_the_http_port(tmp_path: Path) -> None:
    port = free_port()
    async with running_qa(_settings(tmp_path, metrics_port=port)) as qa:
        assert (await qa.client.get("/metrics")).status_code == 404
        await qa.client.get("/healthz")
        status, body = await asyncio.to_thread(scrape, port)
        assert status == 200
        assert b"herald_qa_http_requests_total" in body
        assert (await asyncio.to_thread(scrape, port, "/healthz"))[0] == 404
    # closed with the application
    status, _ = await asyncio.to_thread(_closed_or, port)
    assert status == 0


def _closed_or(port: int) -> tuple[int, bytes]:
    try:
        return scrape(port)
    except OSError:
        return 0, b""


def test_serve_with_two_workers_answers_the_sum_on_the_metrics_port(
    tmp_path: Path, sqlite_template: Path
) -> None:
    metrics_port = free_port()
    service = start_service(tmp_path, sqlite_template, HERALD_QA_METRICS_PORT=str(metrics_port))
    try:
        for _ in range(6):
            status, _, _ = service.get("/metrics")
            assert status == 404
        for _ in range(10):
            assert service.get("/healthz")[0] == 200

        def summed() -> bool:
            status, text = _closed_or(metrics_port)
            counted = sample(text, "herald_qa_http_requests_total", route="/healthz")
            refused = sample(text, "herald_qa_metrics_refused_total")
            return status == 200 and sum(counted) >= 10 and refused == [6.0]

        wait_until(summed, service)
    finally:
        stop(service)
