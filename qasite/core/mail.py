"""Outgoing mail: SMTP when ``smtp_host`` is set, otherwise the log and a development mailbox.

The development mailbox keeps the last :data:`MAILBOX_SIZE` messages in memory and is served
at ``GET /dev/mailbox`` (to loopback clients only, :mod:`qasite.api.routes.dev`) only when
``dev_mailbox`` is true and ``environment`` is ``development``: it shows every user's
verification link. Off, it keeps nothing; on, a warning says so at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage

from qasite.core.settings import Settings
from qasite.domain.models import utcnow

log = logging.getLogger(__name__)

MAILBOX_SIZE = 100


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str
    link: str | None = None
    sent_at: str = field(default_factory=lambda: utcnow().isoformat())


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.mailbox: deque[Mail] = deque(maxlen=MAILBOX_SIZE)
        self._keeps = settings.serves_dev_mailbox and settings.smtp_host is None
        if self._keeps:
            log.warning(
                "development mailbox on: GET /dev/mailbox shows every mail sent (verification "
                "links) to loopback clients; HERALD_QA_DEV_MAILBOX=false turns it off"
            )
        elif settings.dev_mailbox and not settings.is_development:
            log.warning("HERALD_QA_DEV_MAILBOX ignored: there is no mailbox in production")

    async def send(self, mail: Mail) -> None:
        """Send *mail*; an SMTP failure is logged, never raised (the user can ask again)."""
        if self._settings.smtp_host is None:
            log.info("mail to %s: %s\n%s", mail.to, mail.subject, mail.body)
            if self._keeps:
                self.mailbox.append(mail)
            return
        try:
            await asyncio.to_thread(self._send_smtp, mail)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("mail to %s not sent: %s", mail.to, exc)

    def _send_smtp(self, mail: Mail) -> None:
        s = self._settings
        assert s.smtp_host is not None
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = s.mail_from, mail.to, mail.subject
        message.set_content(mail.body)
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=10) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_user is not None:
                smtp.login(s.smtp_user, s.smtp_password or "")
            smtp.send_message(message)
