"""A user's public side: their profile (name, member since, counts) and their answers.

    profile = await public_profile(session, user_id)        # None: no such user
    page = await answers_by(session, user_id, before=None, limit=30)

Nothing private leaves here: no email, no verification state. A user's questions are a
search with ``author_id`` (:mod:`qasite.domain.search`). The answers page by id, newest
first: ``before`` is the last id of the previous page (ids only grow, so pages neither
repeat nor skip an answer).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain.models import Answer, Question, User
from qasite.domain.names import display_name


@dataclass(frozen=True, slots=True)
class PublicProfile:
    id: int
    display_name: str
    created_at: dt.datetime
    question_count: int
    answer_count: int


@dataclass(frozen=True, slots=True)
class AnswerLine:
    """One of a user's answers as their page lists it, with its question's title."""

    id: int
    question_id: int
    question_title: str
    score: int
    accepted: bool
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class AnswerLines:
    items: list[AnswerLine]
    next_before: int | None
    """Pass as ``before`` for the next page; None on the last."""


async def public_profile(session: AsyncSession, user_id: int) -> PublicProfile | None:
    user = await session.get(User, user_id)
    if user is None:
        return None
    questions = await session.scalar(
        select(func.count()).select_from(Question).where(Question.author_id == user_id)
    )
    answers = await session.scalar(
        select(func.count()).select_from(Answer).where(Answer.author_id == user_id)
    )
    return PublicProfile(
        id=user.id,
        display_name=display_name(user.display_name),
        created_at=user.created_at,
        question_count=int(questions or 0),
        answer_count=int(answers or 0),
    )


async def answers_by(
    session: AsyncSession, user_id: int, *, before: int | None, limit: int
) -> AnswerLines:
    """*user_id*'s answers, newest first, with ids below *before*."""
    statement = (
        select(Answer, Question.title, Question.accepted_answer_id)
        .join(Question, Question.id == Answer.question_id)
        .where(Answer.author_id == user_id)
    )
    if before is not None:
        statement = statement.where(Answer.id < before)
    rows = (await session.execute(statement.order_by(Answer.id.desc()).limit(limit + 1))).all()
    items = [
        AnswerLine(
            id=answer.id,
            question_id=answer.question_id,
            question_title=title,
            score=answer.score,
            accepted=accepted_id == answer.id,
            created_at=answer.created_at,
        )
        for answer, title, accepted_id in rows[:limit]
    ]
    return AnswerLines(items, items[-1].id if len(rows) > limit else None)
