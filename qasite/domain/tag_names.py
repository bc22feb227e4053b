"""A question's tag names, read with the query that reads the question.

* :func:`tag_names`: one correlated subquery (``string_agg`` on PostgreSQL, ``group_concat``
  on SQLite) instead of a second query for the tags; the names come comma-separated, in no
  particular order (the channel grammar's tag alphabet has no comma), None when the question
  has no tag. For one question (the page, qasite/domain/page.py).
* :func:`tag_ids` and :class:`TagNames`: the ids only, from the primary key of
  ``question_tags`` alone, and their names from a cache of the tags table. For a page of
  results (qasite/domain/search.py): joining ``tags`` cost PostgreSQL a hash of the tags table
  per line, 1.0 ms of a search's 7 ms for 31 lines against 0.07 ms for the ids.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Label, String, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain.models import Question, Tag, question_tags

TAG_NAMES_INFO = "herald_tag_names"
"""The key of a read session's ``info`` holding the process's :class:`TagNames`
(qasite/core/db.py)."""


@functools.cache
def tag_names(dialect: str) -> Label[Any]:
    """The ``tag_names`` column of the :class:`Question` in the enclosing query, built once
    per dialect (its SQLAlchemy cache key is memoized on it)."""
    return (
        select(_comma_joined(dialect, Tag.__table__.c.name))
        .select_from(question_tags.join(Tag, Tag.id == question_tags.c.tag_id))
        .where(question_tags.c.question_id == Question.id)
        .scalar_subquery()
        .label("tag_names")
    )


@functools.cache
def tag_ids(dialect: str) -> Label[Any]:
    """The ``tag_ids`` column of the :class:`Question` in the enclosing query: its tags' ids,
    comma-separated, None when it has none (read them with :func:`ids_of`)."""
    return (
        select(_comma_joined(dialect, cast(question_tags.c.tag_id, String)))
        .where(question_tags.c.question_id == Question.id)
        .scalar_subquery()
        .label("tag_ids")
    )


def _comma_joined(dialect: str, column: ColumnElement[str]) -> ColumnElement[str]:
    """The aggregate of *column*'s values, comma-separated (None over no row)."""
    if dialect == "postgresql":
        return func.string_agg(column, literal(","))
    return func.group_concat(column, literal(","))


def ids_of(column: str | None) -> list[int]:
    """The ids of a :func:`tag_ids` value."""
    return [int(part) for part in column.split(",")] if column else []


class TagNames:
    """Tag names by id, each read once per process: a tag is never renamed nor deleted and its
    id is never reused (``NEVER_REUSE_IDS``), so a name once read stays true. Bounded: past
    *max_entries* names the cache starts again empty."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._names: dict[int, str] = {}
        self._max_entries = max_entries

    async def names(self, session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
        """A mapping that holds the name of each of *ids* (one query for those not yet read)."""
        missing = {i for i in ids if i not in self._names}
        if missing:
            if len(self._names) + len(missing) > self._max_entries:
                self._names = {}
            found = await session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(missing)))
            self._names.update((row.id, row.name) for row in found)
        return self._names


def session_tag_names(session: AsyncSession) -> TagNames:
    """The :class:`TagNames` of *session*'s database, else a new one (read for this call)."""
    names = session.info.get(TAG_NAMES_INFO)
    return names if isinstance(names, TagNames) else TagNames()
