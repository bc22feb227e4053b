"""Tag names by id: each read once per process, bounded, and shared by the read sessions of
one database (qasite/domain/tag_names.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from qasite.domain.posts import tags_named
from qasite.domain.tag_names import TagNames, ids_of, session_tag_names
from tests.qasite.support import QA


@pytest.fixture
def statements(qa: QA) -> Iterator[list[str]]:
    """The queries of tag names the database runs while the test does."""
    seen: list[str] = []
    engine = qa.context.db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT tags.id, tags.name") and "tags.id IN" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def tag_ids_named(qa: QA, *names: str) -> list[int]:
    async with qa.context.db.write() as session:
        return [tag.id for tag in await tags_named(session, list(names))]


async def test_a_name_is_read_once_then_answered_from_the_cache(
    qa: QA, statements: list[str]
) -> None:
    python, redis = await tag_ids_named(qa, "python", "redis")
    names = TagNames()
    async with qa.context.db.reads() as session:
        assert (await names.names(session, [python]))[python] == "python"
        assert len(statements) == 1
        found = await names.names(session, [python, redis])
        assert (found[python], found[redis]) == ("python", "redis")
        assert len(statements) == 2  # only redis was read
        await names.names(session, [redis, python])
    assert len(statements) == 2


async def test_past_its_bound_the_cache_starts_again(qa: QA, statements: list[str]) -> None:
    ids = await tag_ids_named(qa, "a-tag", "b-tag", "c-tag")
    names = TagNames(max_entries=2)
    async with qa.context.db.reads() as session:
        await names.names(session, ids[:2])
        found = await names.names(session, ids[2:])
    assert found == {ids[2]: "c-tag"}
    assert len(statements) == 2


async def test_the_read_sessions_of_one_database_share_one_cache(qa: QA) -> None:
    db = qa.context.db
    async with db.reads() as one, db.autocommit_reads() as other:
        assert session_tag_names(one) is session_tag_names(other)
    async with db.write() as session:
        assert session_tag_names(session) is not session_tag_names(session)  # none: a new one


def test_tag_ids_are_read_from_their_comma_separated_column() -> None:
    assert ids_of("3,14,15") == [3, 14, 15]
    assert ids_of(None) == []
    assert ids_of("") == []
