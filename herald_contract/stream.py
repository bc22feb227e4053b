"""What a publish and a history read return, shared by the publisher and the buses."""

from __future__ import annotations

from dataclasses import dataclass

from herald_contract.envelope import StreamPosition


@dataclass(frozen=True, slots=True)
class PublishResult:
    position: StreamPosition
    """The epoch and the offset this publication got."""
    duplicate: bool
    """True when the event id was already published: nothing was published again."""


@dataclass(frozen=True, slots=True)
class HistoryResult:
    position: StreamPosition
    """The channel's current epoch and last offset (0 when nothing was published yet)."""
    publications: list[bytes]
    """Envelopes after ``since``, in offset order (empty when no ``since`` was given)."""
    complete: bool
    """True when ``publications`` holds every offset from ``since.offset + 1`` to the top in
    ``since.epoch``: the reader can continue without a gap. Always True without ``since``."""


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """One read of :meth:`herald_contract.bus.Bus.history_many`: the arguments of ``history``."""

    channel: str
    since: StreamPosition | None
    limit: int
