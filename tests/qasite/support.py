"""Helpers of the Q&A core tests: a running app with a recording bus, users, posts, events."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import func, select

from qasite.core.context import QAContext
from qasite.core.settings import Settings
from qasite.domain.models import Base, OutboxEvent
from qasite.domain.relay import EventSink
from qasite.main import create_app

WAIT_BOUND_S = 30.0
"""How long a wait on a condition lasts at most: a bound against a hang, not a measured window."""
_emails = itertools.count(1)


@dataclass
class Published:
    channel: str
    data: Any
    event_id: str


@dataclass
class RecordingSink:
    """An EventSink that keeps what it was given (and can be told to fail)."""

    events: list[Published] = field(default_factory=list)
    failing: bool = False

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> object:
        if self.failing:
            from herald_contract.errors import PublishFailed

            raise PublishFailed(channel, "told to fail")
        self.events.append(Published(channel, data, event_id))
        return None

    def on(self, channel: str) -> list[Any]:
        return [e.data for e in self.events if e.channel == channel]

    def of_type(self, channel: str, kind: str) -> list[Any]:
        return [d for d in self.on(channel) if d.get("type") == kind]


async def wait_until(check: Callable[[], bool], what: str) -> None:
    """Return as soon as *check()* is true (polled on the event loop); fail naming *what* if
    it never becomes true within :data:`WAIT_BOUND_S`."""
    try:
        async with asyncio.timeout(WAIT_BOUND_S):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def no_server(reason: str, environ: Mapping[str, str] = os.environ) -> NoReturn:
    """Skip for *reason*; fail instead when ``CI`` is ``true``: a CI run must not pass with
    the PostgreSQL half of the database tests unrun."""
    if environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


def qa_settings(tmp_path: Path, database_url: str, **changes: Any) -> Settings:
    base = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        relay_poll_interval_s=0.02,
        relay_retry_max_s=0.1,
        argon2_time_cost=1,
        argon2_memory_kib=64,
        max_attachment_bytes=64 * 1024,
        dev_mailbox=True,  # signup() reads the verification link there (off by default)
    )
    return base.replace(**changes)


@dataclass
class User:
    id: int
    email: str
    headers: dict[str, str]
    tokens: dict[str, Any]


@dataclass
class QA:
    """A running Q&A core: ``client`` talks to it in-process, ``sink`` sees what it publishes."""

    app: FastAPI
    client: httpx.AsyncClient
    sink: Any

    @property
    def context(self) -> QAContext:
        context: QAContext = self.app.state.qa
        return context

    async def pending_events(self) -> int:
        async with self.context.db.reads() as session:
            query = select(func.count()).where(OutboxEvent.published_at.is_(None))
            return int(await session.scalar(query) or 0)

    async def settle(self) -> None:
        """Wait until the relay has published every committed event (at most
        :data:`WAIT_BOUND_S`, a bound against a hang)."""
        try:
            async with asyncio.timeout(WAIT_BOUND_S):
                while await self.pending_events():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"{await self.pending_events()} events never published") from None

    async def signup(
        self, *, verified: bool = True, email: str | None = None, name: str | None = None
    ) -> User:
        email = email or f"user{next(_emails)}@example.org"
        password = "correct horse battery"
        account: dict[str, str] = {"email": email, "password": password}
        if name is not None:
            account["display_name"] = name
        r = await self.client.post("/api/auth/register", json=account)
        assert r.status_code == 202, r.text
        if verified:
            link = next(
                m["link"]
                for m in (await self.client.get("/dev/mailbox")).json()
                if m["to"] == email
            )
            r = await self.client.get(link.replace("http://127.0.0.1:8080", ""))
            assert r.status_code == 200, r.text
        r = await self.client.post("/api/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        tokens = r.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        user_id = (await self.client.get("/api/auth/me", headers=headers)).json()["id"]
        return User(user_id, email, headers, tokens)

    async def ask(
        self,
        user: User,
        *,
        title: str = "How do I read a file?",
        body: str = "I tried `open()`.",
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/api/questions",
            json={"title": title, "body": body, "tags": tags or ["python"]},
            headers=user.headers,
        )
        assert r.status_code == 201, r.text
        answer: dict[str, Any] = r.json()
        return answer

    async def answer(
        self, user: User, question_id: int, body: str = "Use pathlib."
    ) -> dict[str, Any]:
        r = await self.client.post(
            f"/api/questions/{question_id}/answers", json={"body": body}, headers=user.headers
        )
        assert r.status_code == 201, r.text
        answer: dict[str, Any] = r.json()
        return answer


@asynccontextmanager
async def running_qa(
    settings: Settings,
    sink: EventSink | None = None,
    *,
    record: bool = True,
    migrate_on_start: bool = True,
) -> AsyncIterator[QA]:
    """The app with its lifespan; events go to *sink*, else to a RecordingSink, else (with
    ``record=False``) to ``settings.redis_url``."""
    recording = sink if sink is not None or not record else RecordingSink()
    app = create_app(settings, sink=recording, migrate_on_start=migrate_on_start)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as client:
            yield QA(app, client, recording)


async def assert_only_the_author_changes(
    qa: QA, path: str, author: User, other: User, body: str
) -> dict[str, Any]:
    """PATCH and DELETE *path* (a post or comment of *author*'s): *other* gets 403 for both,
    *author*'s edit to *body* is answered (returned) and the delete is 204."""
    refused = await qa.client.patch(path, json={"body": body}, headers=other.headers)
    assert refused.status_code == 403
    assert (await qa.client.delete(path, headers=other.headers)).status_code == 403
    r = await qa.client.patch(path, json={"body": body}, headers=author.headers)
    assert r.status_code == 200, r.text
    edited: dict[str, Any] = r.json()
    assert (await qa.client.delete(path, headers=author.headers)).status_code == 204
    return edited


def png_bytes(width: int = 4, height: int = 3, *, noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    if noise:
        image = Image.effect_noise((width, height), 100).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error object of a JSON error answer (asserting its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == response.status_code
    assert isinstance(error["message"], str) and error["message"]
    return error


async def truncate(url: str) -> None:
    """Empty every table of the PostgreSQL database at *url* (ids restart from 1)."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
