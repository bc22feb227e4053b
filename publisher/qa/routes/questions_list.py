"""GET /api/questions: the question list (minimal: newest first; search comes next)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from publisher.qa.deps import ReadSession
from publisher.qa.errors import ERROR_RESPONSES
from publisher.qa.schemas import Id, QuestionPage
from publisher.qa.search import newest_questions

router = APIRouter(prefix="/api/questions", tags=["questions"], responses=ERROR_RESPONSES)


@router.get("", response_model=QuestionPage)
async def list_questions(
    session: ReadSession,
    cursor: Annotated[Id | None, Query(description="next_cursor from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 30,
) -> QuestionPage:
    """Questions, newest first."""
    return await newest_questions(session, before=cursor, limit=limit)
