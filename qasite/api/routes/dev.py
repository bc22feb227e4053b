"""Development only: the mailbox where mails go when no SMTP server is configured.

It shows every user's verification link, so it is served only when ``dev_mailbox`` is true
in development (``./herald run`` in embedded mode turns it on and says so), and only to a
client on this machine: a loopback address that did not come through a proxy (a request
carrying ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP`` was relayed for someone else).
Anything else gets the 404 of an unknown path and counts in
``herald_qa_dev_mailbox_refused_total{reason="off"|"not_loopback"}`` (issue 11, item 10).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, Request

from qasite.api.deps import Ctx
from qasite.api.errors import NotFound
from qasite.core.metrics import QAMetrics

router = APIRouter(prefix="/dev", tags=["development"])

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_local(request: Request) -> bool:
    """Whether *request* comes from a loopback address, directly (no proxy headers)."""
    if request.client is None or any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


@router.get("/mailbox")
async def mailbox(request: Request, context: Ctx) -> list[dict[str, Any]]:
    """The last mails "sent", newest first (``HERALD_QA_DEV_MAILBOX`` in development, and to
    loopback clients only; 404 otherwise)."""
    reason = (
        "off"
        if not context.settings.serves_dev_mailbox
        else "not_loopback"
        if not is_local(request)
        else None
    )
    if reason is not None:
        metrics: QAMetrics | None = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.dev_mailbox_refused.labels(reason).inc()
        raise NotFound("Not Found")  # what an unknown path answers
    return [
        {"to": m.to, "subject": m.subject, "body": m.body, "link": m.link, "sent_at": m.sent_at}
        for m in reversed(context.mailer.mailbox)
    ]
