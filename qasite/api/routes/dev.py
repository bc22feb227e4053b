"""Development only: the mailbox where mails go when no SMTP server is configured."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from qasite.api.deps import Ctx

router = APIRouter(prefix="/dev", tags=["development"])


@router.get("/mailbox")
async def mailbox(context: Ctx) -> list[dict[str, Any]]:
    """The last mails "sent", newest first (only when environment is development)."""
    return [
        {"to": m.to, "subject": m.subject, "body": m.body, "link": m.link, "sent_at": m.sent_at}
        for m in reversed(context.mailer.mailbox)
    ]
