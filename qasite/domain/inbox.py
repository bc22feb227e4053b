"""Inbox items: created in the transaction of the write that causes them, each with an event.

The event on ``user:<id>`` carries the item and the recipient's unread count as counted in
that transaction (state, not a delta).
"""

from __future__ import annotations

import enum

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain import events
from qasite.domain.models import InboxItem, User

EXCERPT_LENGTH = 200


class InboxKind(enum.Enum):
    ANSWER = "answer"
    """Your question was answered."""
    COMMENT = "comment"
    """Your post got a comment."""
    ACCEPTED = "accepted"
    """Your answer was accepted."""


def excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_LENGTH else flat[: EXCERPT_LENGTH - 1] + "\u2026"


async def unread_count(session: AsyncSession, user_id: int) -> int:
    query = select(func.count()).where(InboxItem.user_id == user_id, InboxItem.read_at.is_(None))
    return int(await session.scalar(query) or 0)


async def notify(
    session: AsyncSession,
    *,
    recipient_id: int,
    actor: User,
    kind: InboxKind,
    text: str,
    question_id: int,
    answer_id: int | None = None,
    comment_id: int | None = None,
) -> InboxItem | None:
    """Add an inbox item for *recipient_id* and its event; nothing when you act on your own post."""
    if recipient_id == actor.id:
        return None
    item = InboxItem(
        user_id=recipient_id,
        actor_id=actor.id,
        kind=kind.value,
        question_id=question_id,
        answer_id=answer_id,
        comment_id=comment_id,
        excerpt=excerpt(text),
    )
    session.add(item)
    await session.flush()
    unread = await unread_count(session, recipient_id)
    events.inbox_item_added(session, item, unread, actor_name=actor.display_name)
    return item


async def unread_holders(session: AsyncSession, where: ColumnElement[bool]) -> list[int]:
    """The users with unread items matching *where* (their counts change if those go)."""
    query = select(InboxItem.user_id).where(where, InboxItem.read_at.is_(None)).distinct()
    return list((await session.scalars(query)).all())


async def publish_unread(session: AsyncSession, user_ids: list[int]) -> None:
    """After items were deleted with their post (ON DELETE CASCADE): each user's new count."""
    await session.flush()
    for user_id in sorted(user_ids):
        events.unread_changed(session, user_id, await unread_count(session, user_id))
