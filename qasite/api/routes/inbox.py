"""Your inbox: items, unread count, mark one, a question's or all read (each change is
published to ``user:<id>`` with the new unread count)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select, update

from qasite.api.deps import CurrentUserId, ItemId, QuestionId, ReadSession, WriteTx
from qasite.api.errors import ERROR_RESPONSES, NotFound
from qasite.api.schemas import Id, InboxItemOut, InboxPage, UnreadOut
from qasite.domain import events
from qasite.domain.inbox import unread_count
from qasite.domain.models import InboxItem, Question, User, utcnow
from qasite.domain.names import display_name

router = APIRouter(prefix="/api/inbox", tags=["inbox"], responses=ERROR_RESPONSES)


def _out(item: InboxItem, actor_name: str | None, title: str | None) -> InboxItemOut:
    return InboxItemOut(
        id=item.id,
        kind=item.kind,
        actor_id=item.actor_id,
        actor_name=None if item.actor_id is None else display_name(actor_name),
        question_id=item.question_id,
        question_title=title,
        answer_id=item.answer_id,
        comment_id=item.comment_id,
        excerpt=item.excerpt,
        created_at=item.created_at,
        read=item.read_at is not None,
    )


@router.get("", response_model=InboxPage)
async def list_inbox(
    user_id: CurrentUserId,
    session: ReadSession,
    before: Annotated[Id | None, Query(description="the next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 30,
) -> InboxPage:
    """Your inbox items, newest first, each with its actor's name and its question's title."""
    query = (
        select(InboxItem, User.display_name, Question.title)
        .outerjoin(User, User.id == InboxItem.actor_id)
        .outerjoin(Question, Question.id == InboxItem.question_id)
        .where(InboxItem.user_id == user_id)
    )
    if before is not None:
        query = query.where(InboxItem.id < before)
    rows = (await session.execute(query.order_by(InboxItem.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return InboxPage(
        items=[_out(item, name, title) for item, name, title in rows],
        unread=await unread_count(session, user_id),
        next_cursor=str(rows[-1][0].id) if more else None,
    )


@router.get("/unread-count", response_model=UnreadOut)
async def unread(user_id: CurrentUserId, session: ReadSession) -> UnreadOut:
    return UnreadOut(unread=await unread_count(session, user_id))


@router.post("/{item_id}/read", response_model=UnreadOut)
async def mark_read(item_id: ItemId, user_id: CurrentUserId, tx: WriteTx) -> UnreadOut:
    """Mark one of your items read."""
    item = await tx.session.get(InboxItem, item_id)
    if item is None or item.user_id != user_id:
        raise NotFound(f"no inbox item {item_id} in your inbox")
    if item.read_at is None:
        item.read_at = utcnow()
        await tx.session.flush()
        count = await unread_count(tx.session, user_id)
        events.unread_changed(tx.session, user_id, count)
    else:
        count = await unread_count(tx.session, user_id)
    await tx.commit()
    return UnreadOut(unread=count)


@router.post("/questions/{question_id}/read", response_model=UnreadOut)
async def mark_question_read(
    question_id: QuestionId, user_id: CurrentUserId, tx: WriteTx
) -> UnreadOut:
    """Mark read every item of yours about *question_id* (the page calls it when you view the
    question); the new count is published only if something changed."""
    result = await tx.session.execute(
        update(InboxItem)
        .where(
            InboxItem.user_id == user_id,
            InboxItem.question_id == question_id,
            InboxItem.read_at.is_(None),
        )
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    count = await unread_count(tx.session, user_id)
    if result.rowcount:  # type: ignore[attr-defined]
        events.unread_changed(tx.session, user_id, count)
    await tx.commit()
    return UnreadOut(unread=count)


@router.post("/read-all", response_model=UnreadOut)
async def mark_all_read(user_id: CurrentUserId, tx: WriteTx) -> UnreadOut:
    result = await tx.session.execute(
        update(InboxItem)
        .where(InboxItem.user_id == user_id, InboxItem.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        events.unread_changed(tx.session, user_id, 0)
    await tx.commit()
    return UnreadOut(unread=0)
