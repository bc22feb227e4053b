"""The rules of a channel's history, as plain values and functions (no I/O, no Redis).

This module owns:

* :class:`HistorySettings`: how much and how long a channel's history keeps, per channel
  kind (:class:`Retention`, from the namespace file). Retention is applied by whoever makes a
  publication, so every publisher and the fleet of an installation must build it from the
  same settings and the same namespace file (docs/configuration.md, docs/namespaces.md);
* event ids (:func:`check_event_id`): the idempotency keys a publisher may pass;
* epochs (:func:`new_epoch`): the name of one unbroken history of a channel, and
  :data:`NO_EPOCH`, the position of a channel with nothing published yet (no stored state);
* :func:`history_complete`: the one test of "no gap" that both buses (and so the fleet's
  catch-up) apply to a history read, with :func:`reading_from` for a reader that saw nothing;
* :func:`to_ms`: seconds as the milliseconds Redis expiries take.

The Lua scripts (:mod:`herald_contract.redis_scripts`) and the in-process bus implement these
rules; this module depends on neither.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from herald_contract.envelope import StreamPosition
from herald_contract.errors import InvalidPayload

MAX_EVENT_ID_LENGTH = 128
_EVENT_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_EVENT_ID_LENGTH}}}")


def check_event_id(event_id: str) -> str:
    """Return *event_id* if it is ``""`` (none) or 1-128 of ``A-Za-z0-9_.:-``; else raise.

    Raises :class:`InvalidPayload`. The alphabet keeps idempotency keys printable and short.
    """
    if event_id and _EVENT_ID.fullmatch(event_id) is None:
        raise InvalidPayload(
            f"an event id is 1-{MAX_EVENT_ID_LENGTH} characters of A-Z a-z 0-9 _ . : -"
        )
    return event_id


NO_EPOCH = "-"
"""The epoch of a channel with nothing published yet: no meta, no history, nothing stored.

Reading a channel creates nothing; its first publication creates its epoch (a random one of
:func:`new_epoch`, never ``"-"``), whose offsets count from 1 (docs/protocol.md#recovery)."""

NOTHING_PUBLISHED = StreamPosition(NO_EPOCH, 0)
"""The position of a channel with nothing published yet."""


def new_epoch() -> str:
    """A random epoch name (8 URL-safe characters, 48 bits)."""
    return secrets.token_urlsafe(6)


def reading_from(since: StreamPosition, position: StreamPosition) -> StreamPosition:
    """*since* as a position in the epoch of *position* (the channel's current one).

    A reader at :data:`NOTHING_PUBLISHED` saw nothing, so nothing is missing when the current
    epoch's history holds every offset from 1: it reads from offset 0 of that epoch, whichever
    it is. Any other *since* is itself: ``("-", n)`` with n above 0 names publications of an
    epoch the reader never learned, which no history can vouch for (never complete).
    """
    if since == NOTHING_PUBLISHED:
        return StreamPosition(position.epoch, 0)
    return since


def history_complete(
    since: StreamPosition, position: StreamPosition, first_offset: int | None, count: int
) -> bool:
    """Whether *count* publications from *first_offset* cover every offset after *since*.

    Both buses keep offsets consecutive within an epoch, so starting right after
    ``since.offset`` with exactly the missing count means reaching ``position.offset``.
    A *since* in another epoch, or ahead of the top, is never complete. A *since* of
    :data:`NOTHING_PUBLISHED` is offset 0 of the current epoch (:func:`reading_from`).
    """
    since = reading_from(since, position)
    if since.epoch != position.epoch or not 0 <= since.offset <= position.offset:
        return False
    missing = position.offset - since.offset
    return missing == 0 or (first_offset == since.offset + 1 and count == missing)


@dataclass(frozen=True, slots=True)
class Retention:
    """How much and how long one kind's history keeps; a field left None takes the
    installation's value (:class:`HistorySettings`). Set by the namespace file
    (herald_contract/namespaces.py, docs/namespaces.md)."""

    history_size: int | None = None
    history_ttl_s: float | None = None

    def __post_init__(self) -> None:
        if self.history_size is not None and self.history_size < 1:
            raise ValueError(f"history_size must be at least 1, not {self.history_size}")
        if self.history_ttl_s is not None and not self.history_ttl_s > 0:
            raise ValueError(f"history_ttl_s must be positive, not {self.history_ttl_s}")


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How long and how much a channel's history keeps.

    *history_size* and *history_ttl_s* apply to every channel whose kind is not in *kinds*
    (channel kind -> :class:`Retention`, from the namespace file): :meth:`retention` is what
    a publication of a given channel is made with.
    """

    history_size: int = 500
    history_ttl_s: float = 900.0
    meta_ttl_s: float = 30 * 86400.0
    """How long a channel's epoch and top survive without a publication."""
    idempotency_ttl_s: float = 86400.0
    kinds: Mapping[str, Retention] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.history_size < 1:
            raise ValueError(f"history_size must be at least 1, not {self.history_size}")
        for name in ("history_ttl_s", "meta_ttl_s", "idempotency_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")

    def retention(self, channel: str) -> tuple[int, float]:
        """(history_size, history_ttl_s) of *channel*'s kind."""
        kind = self.kinds.get(channel.partition(":")[0])
        if kind is None:
            return self.history_size, self.history_ttl_s
        size = self.history_size if kind.history_size is None else kind.history_size
        ttl_s = self.history_ttl_s if kind.history_ttl_s is None else kind.history_ttl_s
        return size, ttl_s

    @property
    def largest_history_size(self) -> int:
        """The most publications any channel's history keeps (a reader's useful limit)."""
        sizes = [k.history_size for k in self.kinds.values() if k.history_size is not None]
        return max([self.history_size, *sizes])


def to_ms(seconds: float) -> int:
    """Seconds as the whole milliseconds Redis expiries take (at least 1)."""
    return max(1, round(seconds * 1000))
