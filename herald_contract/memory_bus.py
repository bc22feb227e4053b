"""The in-process bus: the embedded default, one worker, no Redis.

It keeps the contract of :mod:`herald_contract.bus` within one event loop: every method runs
to completion without awaiting, so publish and history are atomic for free. Publications
reach the listener through ``loop.call_soon``, never inside :meth:`MemoryBus.publish`, so a
publisher never runs listener code and the offset order is the delivery order.

Settings, as in the Redis bus:

* ``history_size`` and ``history_ttl_s`` bound each channel's history (entries older than
  the TTL are dropped whenever the channel is touched), unless ``kind_retention`` (the
  namespace file's) gives the channel's kind its own;
* ``idempotency_ttl_s`` is how long an event id is remembered;
* ``meta_ttl_s`` is how long a channel's epoch and top survive without a publication; an
  expired channel starts a new epoch, like an expired meta key in Redis.

A channel's state comes into being with its first publication, as the meta key does in
Redis: reading or subscribing to a channel with nothing published stores nothing (its
position is :data:`herald_contract.history.NOTHING_PUBLISHED`), and unsubscribing forgets
the name, so anonymous subscribe churn costs no memory once it stops.

Every expiry is judged by *clock* (``time.monotonic`` unless a test passes a fake one); the
``published_ms`` of an envelope is wall-clock time, as Redis's own clock is in the Redis bus.
This module imports no Redis client: the embedded default runs without one installed.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from herald_contract.bus import (
    BusListener,
    HistoryRead,
    HistoryResult,
    PublishResult,
)
from herald_contract.envelope import StreamPosition, build_envelope
from herald_contract.history import (
    NOTHING_PUBLISHED,
    HistorySettings,
    Retention,
    check_event_id,
    history_complete,
    new_epoch,
    reading_from,
)
from herald_contract.lifecycle import BusLifecycle, BusState

__all__ = ["BusState", "MemoryBus"]


@dataclass(slots=True)
class _Entry:
    offset: int
    published_s: float
    envelope: bytes


@dataclass(slots=True)
class _Channel:
    """One channel's epoch, top, history and remembered event ids."""

    epoch: str
    touched_s: float
    top: int = 0
    entries: deque[_Entry] = field(default_factory=deque)
    events: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    """event id -> (offset, expiry), oldest first (they all share one TTL)."""


class MemoryBus:
    """An in-process :class:`herald_contract.bus.Bus` (see the module docstring).

    It is LIVE from :meth:`start` to :meth:`close` and never RECOVERING: there is no
    connection to lose.
    """

    def __init__(
        self,
        *,
        history_size: int = 500,
        history_ttl_s: float = 900.0,
        meta_ttl_s: float = 30 * 86400.0,
        idempotency_ttl_s: float = 86400.0,
        kind_retention: Mapping[str, Retention] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """*kind_retention*: the channel kinds whose retention differs from *history_size* and
        *history_ttl_s* (:meth:`herald_contract.namespaces.Namespaces.retention`)."""
        self._settings = HistorySettings(
            history_size, history_ttl_s, meta_ttl_s, idempotency_ttl_s, dict(kind_retention or {})
        )
        self._clock = clock
        self._lifecycle = BusLifecycle("memory")
        self._listener: BusListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed: set[str] = set()
        # Least recently published first, so expired channels are found at the front.
        self._channels: OrderedDict[str, _Channel] = OrderedDict()

    @property
    def channel_count(self) -> int:
        """How many channels the bus holds state for (each made by a publication)."""
        return len(self._channels)

    @property
    def state(self) -> BusState:
        return self._lifecycle.state

    @property
    def live(self) -> bool:
        return self._lifecycle.live

    async def start(self, listener: BusListener) -> None:
        """Start delivering to *listener*; live at once.

        Raises :class:`herald_contract.errors.BusStateError` unless the bus is NEW.
        """
        self._lifecycle.expect(BusState.NEW, "start")
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._lifecycle.move(BusState.LIVE, "start")

    async def close(self) -> None:
        """Stop delivering (publications already scheduled are dropped); idempotent."""
        if self._lifecycle.state is not BusState.CLOSED:
            self._lifecycle.move(BusState.CLOSED, "close")
        self._subscribed.clear()
        self._listener = None

    def _require_live(self) -> None:
        self._lifecycle.require(BusState.LIVE)

    async def subscribe(self, channel: str) -> None:
        """Deliver later publications of *channel*; effective on return."""
        self._require_live()
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering *channel*, including publications already scheduled."""
        self._subscribed.discard(channel)

    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """See :meth:`herald_contract.bus.Bus.publish`; raises InvalidPayload for a bad event id."""
        check_event_id(event_id)
        self._require_live()
        now_s = self._clock()
        state = self._channel(channel, now_s)
        if event_id:
            seen = state.events.get(event_id)
            if seen is not None:
                return PublishResult(StreamPosition(state.epoch, seen[0]), duplicate=True)
        state.top += 1
        published_ms = time.time_ns() // 1_000_000
        envelope = build_envelope(state.epoch, state.top, published_ms, event_id, packed_data)
        state.entries.append(_Entry(state.top, now_s, envelope))
        if len(state.entries) > self._settings.retention(channel)[0]:
            state.entries.popleft()
        if event_id:
            state.events[event_id] = (state.top, now_s + self._settings.idempotency_ttl_s)
        state.touched_s = now_s
        self._channels.move_to_end(channel)
        if channel in self._subscribed and self._loop is not None:
            self._loop.call_soon(self._deliver, channel, envelope)
        return PublishResult(StreamPosition(state.epoch, state.top), duplicate=False)

    def _deliver(self, channel: str, envelope: bytes) -> None:
        if self._listener is not None and channel in self._subscribed:
            self._listener.on_publication(channel, envelope)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        """See :meth:`herald_contract.bus.Bus.history`; *limit* below 0 raises ValueError."""
        if limit < 0:
            raise ValueError(f"limit must be at least 0, not {limit}")
        self._require_live()
        state = self._existing(channel, self._clock())
        if state is None:  # nothing published: nothing to keep for a reader
            position, entries = NOTHING_PUBLISHED, deque[_Entry]()
        else:
            position, entries = StreamPosition(state.epoch, state.top), state.entries
        if since is None:
            return HistoryResult(position, [], True)
        start = reading_from(since, position)
        picked: list[_Entry] = []
        if start.epoch == position.epoch and 0 <= start.offset < position.offset:
            picked = [e for e in entries if e.offset > start.offset][:limit]
        first = picked[0].offset if picked else None
        complete = history_complete(since, position, first, len(picked))
        return HistoryResult(position, [e.envelope for e in picked], complete)

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        """See :meth:`herald_contract.bus.Bus.history_many`."""
        return [await self.history(r.channel, r.since, r.limit) for r in reads]

    async def positions(self, channels: Sequence[str]) -> list[StreamPosition]:
        """See :meth:`herald_contract.bus.Bus.positions`; stores nothing."""
        self._require_live()
        now_s = self._clock()
        found = [self._existing(channel, now_s) for channel in channels]
        return [
            NOTHING_PUBLISHED if state is None else StreamPosition(state.epoch, state.top)
            for state in found
        ]

    def forget_history(self) -> None:
        """Lose every channel's history, epoch and event ids, as a Redis restart would.

        A test and operations hook: the next publication of each channel starts a new epoch
        at offset 1, and subscribers recovering from the old epoch get ``complete=False``.
        """
        self._channels.clear()

    def _channel(self, channel: str, now_s: float) -> _Channel:
        """The channel's state with expired parts dropped, created with a new epoch if none."""
        state = self._existing(channel, now_s)
        if state is None:
            state = self._channels[channel] = _Channel(new_epoch(), touched_s=now_s)
        return state

    def _existing(self, channel: str, now_s: float) -> _Channel | None:
        """The channel's state with expired parts dropped; None when nothing was published."""
        self._expire_channels(now_s)
        state = self._channels.get(channel)
        if state is None:
            return None
        cutoff_s = now_s - self._settings.retention(channel)[1]
        while state.entries and state.entries[0].published_s < cutoff_s:
            state.entries.popleft()
        while state.events and next(iter(state.events.values()))[1] <= now_s:
            state.events.popitem(last=False)
        return state

    def _expire_channels(self, now_s: float) -> None:
        cutoff_s = now_s - self._settings.meta_ttl_s
        while self._channels:
            name, state = next(iter(self._channels.items()))
            if state.touched_s >= cutoff_s:
                return
            del self._channels[name]
