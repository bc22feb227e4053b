"""The bus contract (both implementations pass tests/herald_contract/test_bus_contract.py).

Guarantees, per channel:

* :meth:`Bus.publish` gives each publication the next offset of the channel's current epoch
  (1, 2, 3, ... without gaps), appends it to the channel's history and broadcasts it, all at
  once: no reader sees an offset in the history that was not broadcast, or the reverse.
* Live delivery (:meth:`BusListener.on_publication`) is at most once and in offset order per
  channel, for channels this bus is subscribed to, while the bus connection lasts. After a
  connection loss the bus resubscribes by itself and calls :meth:`BusListener.on_bus_restored`:
  publications made in between were not delivered, and the listener repairs the gap from
  :meth:`Bus.history`. That is what makes delivery recoverable rather than at-most-once.
* :meth:`Bus.history` reads the channel's position and the publications after a given one in
  one atomic step, so "history, then live from the subscription" has no gap and, after
  dropping offsets already seen, no duplicate.
* :meth:`Bus.positions` reads the current position of many channels in one call, so that a
  worker can find a channel whose last publications its live delivery silently missed (a
  position check: nothing later arrives to reveal the gap) and repair it from history.
* A history holds at most ``history_size`` publications and forgets those older than
  ``history_ttl_s``; when it is lost altogether (Redis restarted without persistence, meta key
  expired) the channel gets a new epoch and offsets start again from 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol, runtime_checkable

from herald_contract.envelope import StreamPosition
from herald_contract.errors import BusUnavailable
from herald_contract.stream import HistoryRead, HistoryResult, PublishResult

__all__ = [
    "RECOVERY_REASONS",
    "Bus",
    "BusListener",
    "BusObserver",
    "BusUnavailable",
    "HistoryRead",
    "HistoryResult",
    "PublishResult",
    "ShardObserver",
]


class BusListener(Protocol):
    """What a bus calls; every method is synchronous and must not block."""

    def on_publication(self, channel: str, envelope: bytes) -> None:
        """A live publication on a subscribed channel (envelope bytes: herald_contract.envelope)."""

    def on_bus_lost(self) -> None:
        """The bus connection was lost; live publications stop until on_bus_restored."""

    def on_bus_restored(self) -> None:
        """The bus is live again and resubscribed; publications in the gap were not delivered."""


class BusObserver(Protocol):
    """What a bus with a connection to lose reports about it, for metrics.

    The fleet passes one backed by its Prometheus metrics; the contract imports no metrics
    library. Every method is synchronous, must not block and should not raise (a failure is
    logged by the bus and otherwise ignored).
    """

    def live_changed(self, live: bool) -> None:
        """The bus went live (started, or restored after a loss) or stopped being live."""

    def reconnected(self) -> None:
        """The bus reconnected after a loss; called just before ``live_changed(True)``."""


RECOVERY_REASONS: Final = (
    "connection_lost",
    "ping_timeout",
    "slot_moved",
    "sunsubscribe",
    "failover",
    "reader_error",
)
"""Why a bus had to recover (the closed set of ``ShardObserver.recovered``'s *reason*):
a pub/sub connection failed or closed; it stayed silent after a PING; a (cluster) shard
refused a channel with MOVED/ASK; a shard pushed an unasked ``sunsubscribe`` because the
channel's slot left it (migration, failover); a (cluster) shard connection was lost and its
channels were found at another primary on recovery (its replica was promoted); the reader
failed with an unexpected error."""


@runtime_checkable
class ShardObserver(BusObserver, Protocol):
    """A :class:`BusObserver` that also hears about pub/sub connections and recoveries.

    Optional: a bus calls these only when its observer has them (``isinstance`` check), so
    an observer with just the two callbacks above keeps working.
    """

    def shard_connections(self, count: int) -> None:
        """The bus holds *count* pub/sub connections now (plain Redis: 0 or 1; cluster: one
        per primary that owns a wanted channel)."""

    def recovered(self, reason: str, channels: int, seconds: float) -> None:
        """The bus is live again after a loss for *reason* (one of :data:`RECOVERY_REASONS`),
        having resubscribed *channels* channels, *seconds* after the loss was noticed.
        Called just before ``reconnected()``."""


class Bus(Protocol):
    """A publish/subscribe bus with per-channel history (see the module docstring)."""

    @property
    def live(self) -> bool:
        """Whether live publications are flowing (the readiness of a worker)."""

    async def start(self, listener: BusListener) -> None:
        """Connect and start delivering to *listener*; returns once live (or raises)."""

    async def close(self) -> None:
        """Stop delivering and release connections; idempotent."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe to *channel*; returns once every later publication will be delivered.

        Subscribing twice is harmless; the caller reference-counts local subscribers.
        Raises :class:`BusUnavailable` when the bus is down.
        """

    async def unsubscribe(self, channel: str) -> None:
        """Stop live delivery of *channel*; unknown channels are ignored."""

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """Publish msgpack-packed *data* to *channel* (see the guarantees above).

        A non-empty *event_id* makes the call idempotent within ``idempotency_ttl_s``: a
        second call with the same id publishes nothing and returns the first position.
        Raises :class:`BusUnavailable` when the bus is down.
        """

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """The channel's position and, with *since*, up to *limit* publications after it.

        Creates the channel's epoch if it has none yet, so that a subscriber who saw nothing
        can still recover later. Raises :class:`BusUnavailable` when the bus is down.
        """

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """:meth:`history` for each of *reads*, results in the same order, in one call.

        Each result is what :meth:`history` would have returned for that read at the time of
        the call; the reads are not one atomic snapshot across channels (none is needed: each
        channel's result is checked on its own). Raises :class:`BusUnavailable` for the whole
        call when the bus is down.
        """

    async def positions(self, channels: Sequence[str]) -> list[StreamPosition]:
        """The current position of each of *channels*, in the same order, in one call.

        Each is the epoch and top offset the channel was last written with, which is the
        position :meth:`history` would return, except just after a Redis failover: there a
        read (a position check: cheap, reads only, writes nothing) still shows the epoch the
        old primary wrote, until the first history read or publication on the new primary
        starts the new one. :data:`herald_contract.history.NOTHING_PUBLISHED` for a channel
        with nothing published, for which nothing is stored. One pipelined round trip on
        Redis (a cluster pipeline: one per node); not one atomic snapshot across channels.
        Raises :class:`BusUnavailable` for the whole call when the bus is down.
        """
