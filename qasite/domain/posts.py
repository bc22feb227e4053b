"""Shared pieces of questions, answers and comments: tags, loading, a question's page rows, and
the answer counter.

Loading raises :class:`~qasite.domain.errors.NotFound` (or :class:`JustDeleted` when a
concurrent request removed the row); the API answers both with 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from qasite.domain.errors import JustDeleted, NotFound
from qasite.domain.models import Answer, Attachment, Comment, Question, Tag, utcnow


def unique_tags(names: Iterable[str]) -> list[str]:
    """The tags sorted, without repeats: the order every read returns them in."""
    return sorted(set(names))


async def tags_named(session: AsyncSession, names: Sequence[str]) -> list[Tag]:
    """The :class:`Tag` rows for *names*, created when missing (safe under concurrent writers)."""
    if not names:
        return []
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(
        insert(Tag).values([{"name": name} for name in names]).on_conflict_do_nothing()
    )
    found = (await session.scalars(select(Tag).where(Tag.name.in_(names)))).all()
    by_name = {tag.name: tag for tag in found}
    return [by_name[name] for name in names]


async def load_question(session: AsyncSession, question_id: int, *, lock: bool = False) -> Question:
    """The question with its tags; :class:`NotFound` when missing.

    With *lock*, its row is locked ``FOR NO KEY UPDATE`` (PostgreSQL), which orders writers of
    one question without blocking inserts that only reference it (answers, comments, votes).
    Writers that lock lock the question first, then rows under it, always in that order.
    """
    query = select(Question).where(Question.id == question_id).options(selectinload(Question.tags))
    if lock:
        query = query.with_for_update(key_share=True)
    question = await session.scalar(query)
    if question is None:
        raise NotFound("question", question_id)
    return question


async def load_answer(session: AsyncSession, answer_id: int) -> Answer:
    """The answer; :class:`NotFound` when missing."""
    answer = await session.get(Answer, answer_id)
    if answer is None:
        raise NotFound("answer", answer_id)
    return answer


async def relock(session: AsyncSession, row: Question | Answer | Comment) -> None:
    """Read *row* again under a ``FOR NO KEY UPDATE`` lock, so a version bump is not lost.

    :class:`JustDeleted` when a concurrent request deleted it since it was loaded.
    """
    ident = row.id
    try:
        await session.refresh(row, with_for_update={"key_share": True})
    except InvalidRequestError:
        raise JustDeleted(type(row).__name__.lower(), ident) from None


async def change_answer_count(
    session: AsyncSession, question_id: int, delta: int, *, active: bool
) -> int:
    """Add *delta* to the question's ``answer_count`` in SQL and return the new count.

    One ``UPDATE ... RETURNING``, so concurrent answers never lose a count. With *active* the
    question's ``last_activity_at`` becomes now (a new answer is activity; a deletion is not).
    """
    values: dict[str, object] = {"answer_count": Question.answer_count + delta}
    if active:
        values["last_activity_at"] = utcnow()
    result = await session.execute(
        update(Question)
        .where(Question.id == question_id)
        .values(values)
        .returning(Question.answer_count)
        .execution_options(synchronize_session=False)
    )
    return int(result.scalar_one())


@dataclass(frozen=True, slots=True)
class PageRows:
    """Everything under a question, in id order: its answers, and the comments and attachments
    of the question and of those answers (tell them apart by ``question_id`` / ``answer_id``)."""

    answers: Sequence[Answer]
    comments: Sequence[Comment]
    attachments: Sequence[Attachment]


async def load_page(session: AsyncSession, question: Question) -> PageRows:
    """The rows of *question*'s page, in three queries however many answers it has."""
    answers = (
        await session.scalars(
            select(Answer).where(Answer.question_id == question.id).order_by(Answer.id)
        )
    ).all()
    answer_ids = [a.id for a in answers]
    return PageRows(
        answers,
        await _rows_under(session, Comment, question.id, answer_ids),
        await _rows_under(session, Attachment, question.id, answer_ids),
    )


Under = TypeVar("Under", Comment, Attachment)


async def _rows_under(
    session: AsyncSession, model: type[Under], question_id: int, answer_ids: list[int]
) -> Sequence[Under]:
    """The *model* rows on the question or on one of *answer_ids*, in id order."""
    query = (
        select(model)
        .where((model.question_id == question_id) | model.answer_id.in_(answer_ids))
        .order_by(model.id)
    )
    return (await session.scalars(query)).all()


async def attachment_files(session: AsyncSession, post: Question | Answer) -> list[str]:
    """The stored file names of *post*'s attachments (with its answers', for a question)."""
    where: ColumnElement[bool]
    if isinstance(post, Question):
        answer_ids = select(Answer.id).where(Answer.question_id == post.id)
        where = (Attachment.question_id == post.id) | Attachment.answer_id.in_(answer_ids)
    else:
        where = Attachment.answer_id == post.id
    return list((await session.scalars(select(Attachment.storage_name).where(where))).all())
