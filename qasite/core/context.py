"""What a running service holds: built once at start-up, reached by routes through deps.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qasite.core.db import Database
from qasite.core.mail import Mailer
from qasite.core.page_cache import PageCache
from qasite.core.passwords import Passwords
from qasite.core.settings import Settings
from qasite.domain.images import ImageStore


@dataclass(frozen=True, slots=True)
class QAContext:
    settings: Settings
    """With every secret filled in (qasite.core.keys.with_secrets)."""
    db: Database
    mailer: Mailer
    passwords: Passwords
    images: ImageStore
    nudge_relay: Callable[[], None]
    """Called after every committed write, so the relay publishes without waiting a poll."""
    pages: PageCache | None = None
    """The question page cache (qasite/api/page.py); None with ``page_cache`` off."""
