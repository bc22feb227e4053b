"""Shared pieces of questions, answers and comments: tags, loading, and response building."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from qasite.api.errors import NotFound
from qasite.api.schemas import AnswerOut, AttachmentOut, CommentOut, QuestionOut, QuestionSummary
from qasite.domain.models import Answer, Attachment, Comment, Question, Tag


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
    """The question with its tags; 404 when missing.

    With *lock*, its row is locked ``FOR NO KEY UPDATE`` (PostgreSQL), which orders writers of
    one question without blocking inserts that only reference it (answers, comments, votes).
    Routes that lock lock the question first, then rows under it, always in that order.
    """
    query = select(Question).where(Question.id == question_id).options(selectinload(Question.tags))
    if lock:
        query = query.with_for_update(key_share=True)
    question = await session.scalar(query)
    if question is None:
        raise NotFound(f"no question {question_id}")
    return question


async def load_answer(session: AsyncSession, answer_id: int) -> Answer:
    answer = await session.get(Answer, answer_id)
    if answer is None:
        raise NotFound(f"no answer {answer_id}")
    return answer


async def relock(session: AsyncSession, row: Question | Answer | Comment) -> None:
    """Read *row* again under a ``FOR NO KEY UPDATE`` lock, so a version bump is not lost.

    404 when a concurrent request deleted it since it was loaded.
    """
    try:
        await session.refresh(row, with_for_update={"key_share": True})
    except InvalidRequestError:
        raise NotFound(f"this {type(row).__name__.lower()} was just deleted") from None


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        id=attachment.id,
        url=f"/api/attachments/{attachment.id}",
        content_type=attachment.content_type,
        size_bytes=attachment.size_bytes,
        width=attachment.width,
        height=attachment.height,
        question_id=attachment.question_id,
        answer_id=attachment.answer_id,
    )


def summary_out(question: Question) -> QuestionSummary:
    return QuestionSummary(
        id=question.id,
        author_id=question.author_id,
        title=question.title,
        tags=[tag.name for tag in question.tags],
        score=question.score,
        answer_count=question.answer_count,
        accepted_answer_id=question.accepted_answer_id,
        created_at=question.created_at,
        last_activity_at=question.last_activity_at,
    )


def answer_out(
    answer: Answer,
    accepted_id: int | None,
    comments: Sequence[Comment] = (),
    attachments: Sequence[Attachment] = (),
) -> AnswerOut:
    return AnswerOut(
        id=answer.id,
        question_id=answer.question_id,
        author_id=answer.author_id,
        body_md=answer.body_md,
        body_html=answer.body_html,
        score=answer.score,
        score_version=answer.score_version,
        edit_version=answer.edit_version,
        accepted=answer.id == accepted_id,
        created_at=answer.created_at,
        updated_at=answer.updated_at,
        comments=[CommentOut.model_validate(c) for c in comments],
        attachments=[attachment_out(a) for a in attachments],
    )


async def question_out(session: AsyncSession, question: Question) -> QuestionOut:
    """The whole question page: the question, its answers, comments and attachments."""
    answers = (
        await session.scalars(
            select(Answer).where(Answer.question_id == question.id).order_by(Answer.id)
        )
    ).all()
    answer_ids = [a.id for a in answers]
    comments = (
        await session.scalars(
            select(Comment)
            .where((Comment.question_id == question.id) | Comment.answer_id.in_(answer_ids))
            .order_by(Comment.id)
        )
    ).all()
    attachments = (
        await session.scalars(
            select(Attachment)
            .where((Attachment.question_id == question.id) | Attachment.answer_id.in_(answer_ids))
            .order_by(Attachment.id)
        )
    ).all()
    summary = summary_out(question)
    return QuestionOut(
        **summary.model_dump(),
        body_md=question.body_md,
        body_html=question.body_html,
        score_version=question.score_version,
        edit_version=question.edit_version,
        updated_at=question.updated_at,
        answers=[
            answer_out(
                a,
                question.accepted_answer_id,
                [c for c in comments if c.answer_id == a.id],
                [f for f in attachments if f.answer_id == a.id],
            )
            for a in answers
        ],
        comments=[CommentOut.model_validate(c) for c in comments if c.question_id is not None],
        attachments=[attachment_out(f) for f in attachments if f.question_id is not None],
    )


async def attachment_files(session: AsyncSession, post: Question | Answer) -> list[str]:
    """The stored file names of *post*'s attachments (with its answers', for a question)."""
    where: ColumnElement[bool]
    if isinstance(post, Question):
        answer_ids = select(Answer.id).where(Answer.question_id == post.id)
        where = (Attachment.question_id == post.id) | Attachment.answer_id.in_(answer_ids)
    else:
        where = Attachment.answer_id == post.id
    return list((await session.scalars(select(Attachment.storage_name).where(where))).all())
