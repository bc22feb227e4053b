"""What a running service holds: built once at start-up, reached by routes through deps.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from publisher.qa.db import Database
from publisher.qa.images import ImageStore
from publisher.qa.mail import Mailer
from publisher.qa.passwords import Passwords
from publisher.qa.settings import Settings


@dataclass(frozen=True, slots=True)
class QAContext:
    settings: Settings
    """With every secret filled in (publisher.qa.keys.with_secrets)."""
    db: Database
    mailer: Mailer
    passwords: Passwords
    images: ImageStore
    nudge_relay: Callable[[], None]
    """Called after every committed write, so the relay publishes without waiting a poll."""
