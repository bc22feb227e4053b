"""Markdown renders off the event loop (qasite/domain/rendering.py, issue 11 item 14).

A hostile 30,000-character body took about 0.5 s to render on the loop, stalling every other
request of the worker. The checks here are orderings, not durations: a render that waits for
the loop to answer ``/healthz`` finishes only if the loop is free while it runs.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from qasite.domain import rendering
from qasite.domain.rendering import Renderer, render_markdown
from tests.qasite.support import QA

HOSTILE = ("[" * 30_000)[:30_000]
"""The slowest shape found for the parser: unclosed link brackets (0.3-0.5 s here)."""

WAIT_S = 10.0
"""How long a render waits for the loop: a bound against a hang, never reached when green."""


class _RenderWaitingForTheLoop:
    """A render_markdown that blocks until the test saw the loop answer, then renders."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.loop_answered = threading.Event()
        self.loop_was_free = False

    def __call__(self, source: str) -> str:
        self.started.set()
        self.loop_was_free = self.loop_answered.wait(WAIT_S)
        return render_markdown(source)


async def _until(event: threading.Event) -> None:
    async with asyncio.timeout(WAIT_S):
        while not event.is_set():
            await asyncio.sleep(0.005)


async def test_the_loop_answers_while_a_post_renders(
    qa: QA, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await qa.signup()
    slow = _RenderWaitingForTheLoop()
    monkeypatch.setattr(rendering, "render_markdown", slow)
    post = asyncio.create_task(
        qa.client.post(
            "/api/questions",
            json={"title": "a hostile body", "body": HOSTILE, "tags": ["abuse"]},
            headers=user.headers,
        )
    )
    await _until(slow.started)
    health = await qa.client.get("/healthz")
    slow.loop_answered.set()
    assert health.status_code == 200
    created = await post
    assert created.status_code == 201, created.text
    assert slow.loop_was_free, "the render held the event loop: /healthz waited for it"
    assert created.json()["body_html"] == render_markdown(HOSTILE)


async def test_answers_and_edits_render_off_the_loop_too(
    qa: QA, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    a = await qa.answer(user, q["id"])
    writes = [
        ("POST", f"/api/questions/{q['id']}/answers"),
        ("PATCH", f"/api/answers/{a['id']}"),
        ("PATCH", f"/api/questions/{q['id']}"),
    ]
    for method, path in writes:
        slow = _RenderWaitingForTheLoop()
        monkeypatch.setattr(rendering, "render_markdown", slow)
        write = asyncio.create_task(
            qa.client.request(method, path, json={"body": "*new* body"}, headers=user.headers)
        )
        await _until(slow.started)
        assert (await qa.client.get("/healthz")).status_code == 200
        slow.loop_answered.set()
        assert (await write).status_code in (200, 201), (await write).text
        assert slow.loop_was_free, (method, path)


async def test_a_renderer_uses_at_most_its_threads() -> None:
    renderer = Renderer(max_threads=2)
    gate = threading.Event()
    running: set[str] = set()
    most = 0
    lock = threading.Lock()

    def render(source: str) -> str:
        nonlocal most
        with lock:
            running.add(threading.current_thread().name)
            most = max(most, len(running))
        gate.wait(WAIT_S)
        with lock:
            running.discard(threading.current_thread().name)
        return source

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(rendering, "render_markdown", render)
            renders = [asyncio.create_task(renderer.render(f"post {i}")) for i in range(6)]
            async with asyncio.timeout(WAIT_S):
                while most < 2:
                    await asyncio.sleep(0.005)
            gate.set()
            done = await asyncio.gather(*renders)
    finally:
        renderer.close()
    assert most == 2
    assert [r.markdown for r in done] == [f"post {i}" for i in range(6)]
