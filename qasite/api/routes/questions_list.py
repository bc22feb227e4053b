"""GET /api/questions: search and list questions (filters, sorts, signed keyset cursors).

The semantics of each parameter are those of :mod:`qasite.domain.search`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from herald_contract.channels import MAX_ID
from qasite.api.deps import AutocommitReadSession, Ctx
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.outputs import found_out
from qasite.api.schemas import Moment, QuestionPage, TagName, Text
from qasite.domain.search import (
    MAX_PAGE,
    MAX_QUERY_CHARS,
    CursorCodec,
    SearchQuery,
    Sort,
    count_questions,
    search_questions,
)

router = APIRouter(prefix="/api/questions", tags=["questions"], responses=ERROR_RESPONSES)

INT32 = 2**31


@router.get("", response_model=QuestionPage)
async def list_questions(
    session: AutocommitReadSession,
    context: Ctx,
    q: Annotated[
        Text | None,
        Query(
            max_length=MAX_QUERY_CHARS,
            description='full-text query: every word must match; "a phrase"; -word excludes',
        ),
    ] = None,
    tag: Annotated[
        list[TagName] | None,
        Query(max_length=5, description="repeat for several: questions with all of them"),
    ] = None,
    created_from: Annotated[
        Moment | None, Query(description="created at or after (ISO 8601; naive is UTC)")
    ] = None,
    created_to: Annotated[Moment | None, Query(description="created before")] = None,
    min_score: Annotated[int | None, Query(ge=-INT32, lt=INT32)] = None,
    answered: Annotated[
        bool | None,
        Query(description="true: at least one answer (accepted or not); false: none yet"),
    ] = None,
    sort: Annotated[
        Sort | None, Query(description="default: relevance with q, else newest")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="next_cursor or prev_cursor of the page shown"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 30,
    author: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only this user's questions")
    ] = None,
    count: Annotated[
        bool, Query(description="true: also count every match (total); one more query")
    ] = False,
) -> QuestionPage:
    """Questions matching the query, one page at a time (newest first by default)."""
    query = SearchQuery.build(
        text=q,
        tags=tag or (),
        created_from=created_from,
        created_to=created_to,
        min_score=min_score,
        answered=answered,
        sort=sort,
        limit=limit,
        author_id=author,
    )
    secret = context.settings.access_token_secret
    assert secret is not None, "with_secrets() fills it in at start-up"
    page = await search_questions(session, query, CursorCodec(secret), cursor=cursor)
    return QuestionPage(
        items=[found_out(found) for found in page.found],
        next_cursor=page.next_cursor,
        prev_cursor=page.prev_cursor,
        total=await count_questions(session, query) if count else None,
    )
