"""A question's tag names as one column of the query that reads the question.

One correlated subquery (``string_agg`` on PostgreSQL, ``group_concat`` on SQLite) instead of a
second query per page for the tags; the names come comma-separated, in no particular order
(the channel grammar's tag alphabet has no comma), None when the question has no tag.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Label, func, literal, select

from qasite.domain.models import Question, Tag, question_tags


@functools.cache
def tag_names(dialect: str) -> Label[Any]:
    """The ``tag_names`` column of the :class:`Question` in the enclosing query, built once
    per dialect (its SQLAlchemy cache key is memoized on it)."""
    if dialect == "postgresql":
        joined = func.string_agg(Tag.name, literal(","))
    else:
        joined = func.group_concat(Tag.name, literal(","))
    return (
        select(joined)
        .select_from(question_tags.join(Tag, Tag.id == question_tags.c.tag_id))
        .where(question_tags.c.question_id == Question.id)
        .scalar_subquery()
        .label("tag_names")
    )
