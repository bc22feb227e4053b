"""What the ask, answer and edit forms use while a post is being written: a preview of its
Markdown and suggestions of existing tags. Neither writes anything."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from qasite.api.deps import CurrentUserId, MarkdownRenderer, ReadSession
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.schemas import PreviewIn, PreviewOut, TagSuggestion
from qasite.domain.models import Tag, question_tags

router = APIRouter(prefix="/api", tags=["drafts"], responses=ERROR_RESPONSES)

TagPrefix = Annotated[
    str,
    Query(
        pattern=r"^[a-z0-9.][a-z0-9+#.\-]{0,34}$",
        description="the start of a tag name (its alphabet, lower case)",
    ),
]


@router.post("/preview", response_model=PreviewOut)
async def preview(body: PreviewIn, _: CurrentUserId, renderer: MarkdownRenderer) -> PreviewOut:
    """The HTML a post with this Markdown body would show: the same renderer and sanitizer as
    a posted question or answer (signed in only: rendering costs CPU)."""
    rendered = await renderer.render(body.body)
    return PreviewOut(body_html=rendered.html)


@router.get("/tag-suggestions", response_model=list[TagSuggestion])
async def tag_suggestions(
    prefix: TagPrefix,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=20)] = 8,
) -> list[TagSuggestion]:
    """Existing tags starting with *prefix*, the most used first (then by name)."""
    uses = func.count(question_tags.c.question_id)
    query = (
        select(Tag.name, uses)
        .outerjoin(question_tags, question_tags.c.tag_id == Tag.id)
        .where(Tag.name.startswith(prefix, autoescape=True))
        .group_by(Tag.id, Tag.name)
        .order_by(uses.desc(), Tag.name)
        .limit(limit)
    )
    rows = await session.execute(query)
    return [TagSuggestion(name=name, questions=int(count)) for name, count in rows]
