"""How the site names a user: the display name shown beside posts, inbox items and events.

:func:`display_name` is the one rule (an empty name shows as :data:`UNNAMED`); :func:`names_of`
reads the names of many users in one query, so a response names every author at a fixed cost.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain.models import User

UNNAMED = "Anonymous user"
"""Shown for an author whose display name is empty."""


def display_name(name: str | None) -> str:
    """A user's display name as the site shows it: :data:`UNNAMED` when it is empty."""
    return name.strip() if name and name.strip() else UNNAMED


async def names_of(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    """The display names of *user_ids* (one query; none for an empty set)."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {user_id: display_name(name) for user_id, name in rows}
