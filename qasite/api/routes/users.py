"""GET /api/users/{id} and /api/users/{id}/answers: a user's public profile and answers.

Their questions are ``GET /api/questions?author=<id>``. Unknown users are 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from herald_contract.channels import MAX_ID
from qasite.api.deps import ItemId, ReadSession
from qasite.api.errors import ERROR_RESPONSES, NotFound
from qasite.domain.people import answers_by, public_profile

router = APIRouter(prefix="/api/users", tags=["users"], responses=ERROR_RESPONSES)


class ProfileOut(BaseModel):
    id: int
    display_name: str
    created_at: dt.datetime = Field(description="member since")
    question_count: int
    answer_count: int


class UserAnswerOut(BaseModel):
    id: int
    question_id: int
    question_title: str
    score: int
    accepted: bool
    created_at: dt.datetime


class UserAnswersPage(BaseModel):
    items: list[UserAnswerOut]
    next_before: int | None = Field(
        description="pass as ?before= for the next page; null at the end"
    )


@router.get("/{user_id}", response_model=ProfileOut)
async def profile(user_id: ItemId, session: ReadSession) -> ProfileOut:
    """Name, member since, how many questions and answers (no email: it is private)."""
    found = await public_profile(session, user_id)
    if found is None:
        raise NotFound(f"no user {user_id}")
    return ProfileOut(
        id=found.id,
        display_name=found.display_name,
        created_at=found.created_at,
        question_count=found.question_count,
        answer_count=found.answer_count,
    )


@router.get("/{user_id}/answers", response_model=UserAnswersPage)
async def answers(
    user_id: ItemId,
    session: ReadSession,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="next_before from the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 30,
) -> UserAnswersPage:
    """The user's answers, newest first, each with its question's title."""
    if await public_profile(session, user_id) is None:
        raise NotFound(f"no user {user_id}")
    page = await answers_by(session, user_id, before=before, limit=limit)
    return UserAnswersPage(
        items=[
            UserAnswerOut(
                id=a.id,
                question_id=a.question_id,
                question_title=a.question_title,
                score=a.score,
                accepted=a.accepted,
                created_at=a.created_at,
            )
            for a in page.items
        ],
        next_before=page.next_before,
    )
