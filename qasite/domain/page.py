"""A question page's version stamp and its rows, read in few round trips (issue 15, item 5).

:func:`page_stamp` reads, in one query, numbers that change whenever anything the page shows
changes, because every write that changes the page bumps one of them in its own transaction
(the same transaction as its outbox event):

* the question's ``edit_version`` (title, body, tags, acceptance), ``score_version`` (votes)
  and ``answer_count``;
* over its answers: how many, the largest id, the sums of ``edit_version`` and
  ``score_version``;
* over the comments of the question and of its answers: how many, the largest id, the sum of
  ``edit_version``;
* over their attachments: how many and the largest id.

Ids are never reused (``AUTOINCREMENT`` on SQLite, identities on PostgreSQL) and versions only
grow, so no sequence of writes brings a stamp back to an earlier value with other content:
an add raises the largest id past every id seen, a delete lowers the count for good (the rows
under a stamp's largest id can only disappear), an edit or a vote raises a sum. Author names
never change (no route renames a user). A page built after its stamp was read is therefore at
least as new as the stamp: a cache keyed by it never serves a page older than the last
committed write (:mod:`qasite.api.page`).

:func:`page_rows` reads the page itself with the authors' names joined in: the question with
its tags (one query), then its answers, comments and attachments, each only when the stamp
says there are some (no ORM objects: plain rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from qasite.domain.models import (
    Answer,
    Attachment,
    Comment,
    Question,
    Tag,
    User,
    Vote,
    question_tags,
)

PageRow = Any
"""A row of :func:`page_rows` (attribute access by column name; SQLAlchemy's ``Row``)."""

PageStamp = tuple[int, ...]
"""The numbers :func:`page_stamp` reads, in a fixed order (see the module's docstring)."""

_QUESTION, _ANSWERS, _QUESTION_COMMENTS, _ANSWER_COMMENTS, _QUESTION_FILES, _ANSWER_FILES = range(6)
_PARTS = 6


def _stamp_query(question_id: int) -> CompoundSelect[Any]:
    """One row per part of the page. What is under the answers is reached by a join on
    ``answers.question_id`` (an index scan per answer), never by ``answer_id IN (subquery)``:
    PostgreSQL plans that as a sequential scan of the whole table (2.5 s on 1.5 M comments)."""
    zero = literal(0)
    on_answers = Answer.question_id == question_id
    return union_all(
        select(
            literal(_QUESTION),
            Question.edit_version,
            Question.score_version,
            Question.answer_count,
            zero,
        ).where(Question.id == question_id),
        select(
            literal(_ANSWERS),
            func.count(),
            func.coalesce(func.max(Answer.id), 0),
            func.coalesce(func.sum(Answer.edit_version), 0),
            func.coalesce(func.sum(Answer.score_version), 0),
        ).where(on_answers),
        select(
            literal(_QUESTION_COMMENTS),
            func.count(),
            func.coalesce(func.max(Comment.id), 0),
            func.coalesce(func.sum(Comment.edit_version), 0),
            zero,
        ).where(Comment.question_id == question_id),
        select(
            literal(_ANSWER_COMMENTS),
            func.count(),
            func.coalesce(func.max(Comment.id), 0),
            func.coalesce(func.sum(Comment.edit_version), 0),
            zero,
        )
        .select_from(Comment)
        .join(Answer, Answer.id == Comment.answer_id)
        .where(on_answers),
        select(
            literal(_QUESTION_FILES),
            func.count(),
            func.coalesce(func.max(Attachment.id), 0),
            zero,
            zero,
        ).where(Attachment.question_id == question_id),
        select(
            literal(_ANSWER_FILES),
            func.count(),
            func.coalesce(func.max(Attachment.id), 0),
            zero,
            zero,
        )
        .select_from(Attachment)
        .join(Answer, Answer.id == Attachment.answer_id)
        .where(on_answers),
    )


async def page_stamp(conn: AsyncConnection, question_id: int) -> PageStamp | None:
    """The page's version stamp in one query; None when the question does not exist."""
    rows = (await conn.execute(_stamp_query(question_id))).all()
    by_part = {int(row[0]): tuple(int(v) for v in row[1:]) for row in rows}
    if _QUESTION not in by_part:
        return None
    return tuple(v for part in range(_PARTS) for v in by_part.get(part, (0, 0, 0, 0)))


def _count(stamp: PageStamp, part: int) -> int:
    return stamp[4 * part]


def answers_in(stamp: PageStamp) -> int:
    return _count(stamp, _ANSWERS)


def comments_in(stamp: PageStamp) -> int:
    return _count(stamp, _QUESTION_COMMENTS) + _count(stamp, _ANSWER_COMMENTS)


def attachments_in(stamp: PageStamp) -> int:
    return _count(stamp, _QUESTION_FILES) + _count(stamp, _ANSWER_FILES)


@dataclass(frozen=True, slots=True)
class PageRowsLite:
    """The question (with ``author_name`` and ``tag_names``, comma-separated or None), its
    answers and all comments (each with ``author_name``), and attachments, in id order."""

    question: PageRow
    answers: Sequence[PageRow]
    comments: Sequence[PageRow]
    attachments: Sequence[PageRow]


def _tag_list(dialect: str) -> Any:
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


async def page_rows(
    conn: AsyncConnection, question_id: int, stamp: PageStamp
) -> PageRowsLite | None:
    """The page's rows (None if the question is gone); tag names (sorted by the caller) are
    limited to the channel grammar's tag alphabet, which has no comma."""
    question = (
        await conn.execute(
            select(
                *Question.__table__.columns,
                User.display_name.label("author_name"),
                _tag_list(conn.dialect.name),
            )
            .join(User, User.id == Question.author_id)
            .where(Question.id == question_id)
        )
    ).first()
    if question is None:
        return None
    answers: Sequence[PageRow] = ()
    comments: Sequence[PageRow] = ()
    attachments: Sequence[PageRow] = ()
    if answers_in(stamp):
        answers = (
            await conn.execute(
                select(*Answer.__table__.columns, User.display_name.label("author_name"))
                .join(User, User.id == Answer.author_id)
                .where(Answer.question_id == question_id)
                .order_by(Answer.id)
            )
        ).all()
    answer_ids = [a.id for a in answers]
    if comments_in(stamp):
        comments = (
            await conn.execute(
                select(*Comment.__table__.columns, User.display_name.label("author_name"))
                .join(User, User.id == Comment.author_id)
                .where(_under(Comment, question_id, answer_ids))
                .order_by(Comment.id)
            )
        ).all()
    if attachments_in(stamp):
        attachments = (
            await conn.execute(
                select(*Attachment.__table__.columns)
                .where(_under(Attachment, question_id, answer_ids))
                .order_by(Attachment.id)
            )
        ).all()
    return PageRowsLite(question, answers, comments, attachments)


def _under(
    model: type[Comment] | type[Attachment], question_id: int, answer_ids: list[int]
) -> ColumnElement[bool]:
    """On the question or on one of *answer_ids* (a list of values, which PostgreSQL serves
    from the two indexes; a subquery there is planned as a sequential scan)."""
    if not answer_ids:
        return model.question_id == question_id
    return or_(model.question_id == question_id, model.answer_id.in_(answer_ids))


async def votes_of(
    conn: AsyncConnection, user_id: int, question_id: int, answer_ids: Sequence[int]
) -> dict[str, int]:
    """*user_id*'s votes on the question and on *answer_ids*, by post (``question:<id>``,
    ``answer:<id>``); posts they did not vote on are absent. One query."""
    where = Vote.question_id == question_id
    if answer_ids:
        where = where | Vote.answer_id.in_(answer_ids)
    rows = await conn.execute(
        select(Vote.question_id, Vote.answer_id, Vote.value).where(Vote.user_id == user_id, where)
    )
    return {f"question:{q}" if q is not None else f"answer:{a}": int(value) for q, a, value in rows}
