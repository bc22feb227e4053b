"""The question page on SQLite: a warm anonymous read takes no pooled connection (its stamp is
read without the pool), each lookup counts once, and a stamp read that fails is answered the
usual way (qasite/api/page.py)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.qasite.support import QA, qa_settings, running_qa


@pytest.fixture
async def sqlite_qa(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[QA]:
    shutil.copyfile(sqlite_template, tmp_path / "qa.sqlite3")
    # The relay polls only when nudged by a write: its reads would count as checkouts.
    settings = qa_settings(
        tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}", relay_poll_interval_s=60.0
    )
    async with running_qa(settings, migrate_on_start=False) as qa:
        yield qa


def lookups(qa: QA, result: str) -> float:
    value = qa.app.state.metrics.registry.get_sample_value(
        "herald_qa_page_cache_total", {"level": "l1", "result": result}
    )
    return float(value or 0.0)


async def checkouts_to_read(qa: QA, question_id: int, headers: Any = None) -> int:
    await qa.settle()  # the relay's own reads done
    taken: list[object] = []

    def checkout(*_args: Any) -> None:
        taken.append(object())

    pool = qa.context.db.engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    try:
        r = await qa.client.get(f"/api/questions/{question_id}", headers=headers)
        assert r.status_code == 200, r.text
    finally:
        event.remove(pool, "checkout", checkout)
    return len(taken)


async def test_a_warm_anonymous_page_takes_no_pooled_connection(sqlite_qa: QA) -> None:
    qa = sqlite_qa
    asker = await qa.signup()
    q = await qa.ask(asker)
    assert await checkouts_to_read(qa, q["id"]) == 1  # a miss: built through the pool
    hits = lookups(qa, "hit")
    assert await checkouts_to_read(qa, q["id"]) == 0
    assert lookups(qa, "hit") == hits + 1
    assert await checkouts_to_read(qa, q["id"], asker.headers) == 1  # signed in: my_vote


async def test_a_miss_is_counted_once(sqlite_qa: QA) -> None:
    qa = sqlite_qa
    q = await qa.ask(await qa.signup())
    await qa.settle()
    misses = lookups(qa, "miss")
    assert (await qa.client.get(f"/api/questions/{q['id']}")).status_code == 200
    assert lookups(qa, "miss") == misses + 1


async def test_a_stamp_read_that_fails_is_answered_through_the_pool(
    sqlite_qa: QA, monkeypatch: pytest.MonkeyPatch
) -> None:
    qa = sqlite_qa
    q = await qa.ask(await qa.signup())
    assert (await qa.client.get(f"/api/questions/{q['id']}")).status_code == 200
    stamps = qa.context.db.stamps
    assert stamps is not None

    def locked(_question_id: int) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(stamps, "read", locked)
    hits = lookups(qa, "hit")
    assert await checkouts_to_read(qa, q["id"]) == 1
    assert lookups(qa, "hit") == hits + 1
