"""Page stamps on SQLite read without the pool: the same stamp as through the pool, fresh
after every commit, and never waiting for a writer (qasite/domain/page.py)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qasite.api.page import read_connection
from qasite.domain.page import SqliteStamps, page_stamp
from tests.qasite.support import QA, qa_settings, running_qa


@pytest.fixture
async def sqlite_qa(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[QA]:
    shutil.copyfile(sqlite_template, tmp_path / "qa.sqlite3")
    settings = qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}")
    async with running_qa(settings, migrate_on_start=False) as qa:
        yield qa


def stamps_of(qa: QA) -> SqliteStamps:
    stamps = qa.context.db.stamps
    assert stamps is not None, "a SQLite file has stamps read without the pool"
    return stamps


async def pooled_stamp(qa: QA, question_id: int) -> tuple[int, ...] | None:
    async with read_connection(qa.context.db) as conn:
        return await page_stamp(conn, question_id)


async def test_the_stamp_is_the_one_read_through_the_pool(sqlite_qa: QA) -> None:
    qa = sqlite_qa
    asker = await qa.signup()
    q = await qa.ask(asker)
    await qa.answer(asker, q["id"])
    assert stamps_of(qa).read(q["id"]) == await pooled_stamp(qa, q["id"])
    assert stamps_of(qa).read(q["id"] + 1000) is None


async def test_the_stamp_moves_with_each_committed_write(sqlite_qa: QA) -> None:
    qa = sqlite_qa
    asker = await qa.signup()
    q = await qa.ask(asker)
    before = stamps_of(qa).read(q["id"])
    await qa.answer(asker, q["id"])
    after = stamps_of(qa).read(q["id"])
    assert after != before
    assert after == await pooled_stamp(qa, q["id"])


async def test_a_stamp_is_read_while_a_writer_holds_the_write_lock(
    sqlite_qa: QA, tmp_path: Path
) -> None:
    qa = sqlite_qa
    q = await qa.ask(await qa.signup())
    writer = sqlite3.connect(tmp_path / "qa.sqlite3", isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE questions SET score_version = score_version + 1")
        assert stamps_of(qa).read(q["id"]) is not None  # WAL: the last committed state
        writer.execute("COMMIT")
    finally:
        writer.close()


async def test_the_connection_writes_nothing(sqlite_qa: QA, tmp_path: Path) -> None:
    stamps = SqliteStamps(str(tmp_path / "qa.sqlite3"))
    try:
        stamps.read(1)
        conn = next(iter(stamps._connections.values()))
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM questions")
    finally:
        stamps.close()


async def test_postgresql_reads_every_stamp_through_the_pool(qa: QA) -> None:
    q = await qa.ask(await qa.signup())
    assert (await qa.client.get(f"/api/questions/{q['id']}")).status_code == 200
    assert (qa.context.db.stamps is None) == (qa.context.db.dialect == "postgresql")
