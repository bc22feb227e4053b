"""One channel as a worker holds it: its subscribers, its stream position, its state.

Shared by the hub (socketsrv/hub.py: registry and fan-out) and the stream repair
(socketsrv/recovery.py); neither keeps channel state of its own.

States (:class:`ChannelState`)::

    SUBSCRIBING --bus subscription confirmed--> LIVE <--repaired-- REPAIRING
                                                  \\---gap or bus restored--/

Subscribers are *live* (every publication is pushed to them as it comes) or *catching up*
(a subscribe with its history read in flight, a replay paced to what the client drains, or
replayed but not yet reached by the channel's stream); :meth:`Channel.promote` moves them
from the one to the other.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterator
from typing import Protocol

from socketsrv.metrics import NamespaceSeries
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.publication import Publication


class Subscriber(Protocol):
    """A connection as the hub sees it."""

    @property
    def wire(self) -> WireFormat: ...

    def push(self, frame: bytes) -> None:
        """Queue one complete websocket frame; never blocks, never re-enters the hub."""

    def close_with(self, code: CloseCode) -> None:
        """Close the connection with *code* (asynchronously; the hub is told via remove)."""


class ChannelState(enum.Enum):
    SUBSCRIBING = "subscribing"
    LIVE = "live"
    REPAIRING = "repairing"


class CatchUp:
    """Where one catching-up subscriber is."""

    __slots__ = ("last", "paced", "pending")

    def __init__(self) -> None:
        self.pending: list[Publication] | None = []
        """Live publications queued while the history read is in flight; None after it."""
        self.last = 0
        """The last offset pushed to the subscriber."""
        self.paced = False
        """A paced replay feeds the subscriber from history (socketsrv/recovery.py): live
        publications are not pushed to it meanwhile, the replay reads them from history."""


class Channel:
    __slots__ = (
        "catching",
        "epoch",
        "idle_since",
        "last",
        "live",
        "name",
        "ready",
        "repair_buffer",
        "repair_task",
        "series",
        "state",
        "tail",
        "tail_bytes",
    )

    def __init__(self, name: str, ready: asyncio.Task[None], series: NamespaceSeries) -> None:
        self.name = name
        self.series = series
        """Its namespace's metrics (socketsrv/metrics.py): counted per publication."""
        self.state = ChannelState.SUBSCRIBING
        self.ready = ready
        """The bus subscription; LIVE once it is done without an error."""
        self.epoch: str | None = None
        self.last = 0
        """The last offset of the channel's stream handed to subscribers."""
        self.live: dict[WireFormat, dict[Subscriber, None]] = {w: {} for w in WireFormat}
        self.catching: dict[Subscriber, CatchUp] = {}
        self.idle_since: float | None = None
        """When the last subscriber left (the hub's clock); None while it has any."""
        self.repair_buffer: list[Publication] = []
        self.repair_task: asyncio.Task[None] | None = None
        self.tail: list[Publication] | None = None
        """The last publications handed on, contiguous up to ``last`` (socketsrv/tail.py);
        None while it holds none (most channels: a list costs more than the slot)."""
        self.tail_bytes = 0
        """The envelope bytes of ``tail``."""

    def subscribers(self) -> Iterator[Subscriber]:
        for subs in self.live.values():
            yield from subs
        yield from self.catching

    def is_empty(self) -> bool:
        return not self.catching and not any(self.live.values())

    def promote(self) -> None:
        """Move caught-up subscribers to the live set once the stream has reached them."""
        if self.state is not ChannelState.LIVE:
            return
        for sub, catch_up in list(self.catching.items()):
            if catch_up.pending is None and not catch_up.paced and catch_up.last <= self.last:
                del self.catching[sub]
                self.live[sub.wire][sub] = None

    def confirmed(self, task: asyncio.Task[None]) -> None:
        """The bus subscription completed (a done callback): LIVE unless it failed."""
        failed = task.cancelled() or task.exception() is not None
        if not failed and self.state is ChannelState.SUBSCRIBING:
            self.state = ChannelState.LIVE

    def reset_stream(self) -> None:
        """Forget the stream position: the next publication starts it afresh."""
        self.epoch, self.last = None, 0
        self.repair_buffer = []
        self.tail, self.tail_bytes = None, 0
