"""Listing questions: newest first with a keyset cursor.

A minimal version, to be replaced by full-text search, filters and sorts (issue 4, part 2);
its route is in :mod:`publisher.qa.routes.questions_list`.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from publisher.qa.models import Question
from publisher.qa.posts import summary_out
from publisher.qa.schemas import QuestionPage


async def newest_questions(
    session: AsyncSession, *, before: int | None, limit: int
) -> QuestionPage:
    """Up to *limit* questions with ids below *before* (None: from the newest), newest first."""
    query = select(Question).options(selectinload(Question.tags))
    if before is not None:
        query = query.where(Question.id < before)
    rows = (await session.scalars(query.order_by(Question.id.desc()).limit(limit + 1))).all()
    page = rows[:limit]
    return QuestionPage(
        items=[summary_out(q) for q in page],
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )
