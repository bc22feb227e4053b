"""Who is subscribed where on this worker, and the fan-out of each publication.

The hub reference-counts local subscribers per channel: the first one makes the worker
subscribe on the bus, and a channel left without subscribers is unsubscribed only after
``unsubscribe_grace_s`` (one shared sweep, not a timer per channel), so page reloads do not
churn Redis subscriptions.

Fan-out never awaits a client: a publication is decoded once, encoded once per wire format
(:meth:`Publication.frame`), and the same bytes are handed to every subscriber's bounded
:meth:`Subscriber.push`. Push is synchronous and must not call back into the hub.

Gap-free subscribe (docs/protocol.md#recovery): a subscriber first waits until the bus
subscription is confirmed, then is registered as *catching up* (live publications are queued
for it), then reads the history; it gets the reply, the missed publications, then the queued
live ones with offsets above what it already has, and joins the live set once the channel's
stream has caught up with it. The hub also guards the stream of each channel: an offset that
skips ahead, or a bus reconnect, makes it repair the channel from history before going on; if
the history cannot cover the gap, the channel's subscribers are closed with 4003 so that they
reconnect and recover (or reload) on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from herald_contract.bus import Bus, BusUnavailable
from herald_contract.envelope import InvalidEnvelope, StreamPosition
from socketsrv.history import HistoryReader
from socketsrv.metrics import Metrics
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.publication import Publication, decode_publication

log = logging.getLogger(__name__)

Recovery = str  # "none" | "recovered" | "failed" (docs/protocol.md#subscribe)
OnSubscribed = Callable[[StreamPosition, Recovery], None]


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


class _CatchUp:
    __slots__ = ("last", "pending")

    def __init__(self) -> None:
        self.pending: list[Publication] | None = []
        """Live publications queued while the history read is in flight; None after it."""
        self.last = 0


class _Channel:
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
        "state",
    )

    def __init__(self, name: str, ready: asyncio.Task[None]) -> None:
        self.name = name
        self.state = ChannelState.SUBSCRIBING
        self.ready = ready
        self.epoch: str | None = None
        self.last = 0
        self.live: dict[WireFormat, dict[Subscriber, None]] = {w: {} for w in WireFormat}
        self.catching: dict[Subscriber, _CatchUp] = {}
        self.idle_since: float | None = None
        self.repair_buffer: list[Publication] = []
        self.repair_task: asyncio.Task[None] | None = None

    def subscribers(self) -> Iterator[Subscriber]:
        for subs in self.live.values():
            yield from subs
        yield from self.catching

    def is_empty(self) -> bool:
        return not self.catching and not any(self.live.values())


class Hub:
    """Channels and subscribers of one worker; it is the bus's listener."""

    def __init__(
        self,
        bus: Bus,
        *,
        metrics: Metrics,
        history_limit: int,
        unsubscribe_grace_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._history_limit = history_limit
        self._grace_s = unsubscribe_grace_s
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._history = HistoryReader(bus, limit=history_limit, decode=self._decode_all)

    # Queries (tests and metrics)

    def channel_state(self, name: str) -> ChannelState | None:
        ch = self._channels.get(name)
        return None if ch is None else ch.state

    def subscriber_count(self, name: str) -> int:
        ch = self._channels.get(name)
        return 0 if ch is None else sum(1 for _ in ch.subscribers())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    # Subscribing

    async def subscribe(
        self,
        sub: Subscriber,
        channel: str,
        since: StreamPosition | None,
        on_subscribed: OnSubscribed,
    ) -> None:
        """Subscribe *sub* to *channel*, recovering from *since* (see the module docstring).

        Calls *on_subscribed* once, synchronously, right before the first replayed frame is
        pushed. Raises :class:`BusUnavailable` when the bus cannot be reached; returns
        quietly if *sub* was removed meanwhile.
        """
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._open_channel(channel)
        ch.idle_since = None
        catch_up = _CatchUp()
        ch.catching[sub] = catch_up
        self._metrics.subscriptions_open.inc()
        try:
            if not ch.ready.done():
                await asyncio.shield(ch.ready)
            if ch.catching.get(sub) is not catch_up:
                return  # removed while the bus subscription was made
            if ch.ready.cancelled() or ch.ready.exception() is not None:
                self._drop_failed(ch)
                raise BusUnavailable(f"cannot subscribe to {channel}")
            result = await self._history.read(channel, since)
        except BaseException:
            if ch.catching.get(sub) is catch_up:
                del ch.catching[sub]
                self._metrics.subscriptions_open.dec()
            self._mark_idle_if_empty(ch)
            raise
        if ch.catching.get(sub) is not catch_up:
            return  # removed while the history was read
        position = result.position
        if ch.epoch is None:
            ch.epoch, ch.last = position.epoch, position.offset
        elif ch.epoch != position.epoch:
            self._lose(ch, "epoch changed under a subscribe")
            return
        if since is None:
            recovery, last = "none", position.offset
        elif result.complete:
            recovery, last = "recovered", since.offset
        else:
            recovery, last = "failed", position.offset
        self._metrics.recoveries.labels(result=recovery).inc()
        on_subscribed(position, recovery)
        queued, catch_up.pending = catch_up.pending or [], None
        for pub in (*result.publications, *queued):
            if pub.epoch == position.epoch and pub.offset > last:
                sub.push(pub.frame(sub.wire))
                last = pub.offset
        catch_up.last = last
        self._promote(ch)

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Stop delivering *channel* to *sub*; unknown pairs are ignored."""
        ch = self._channels.get(channel)
        if ch is None:
            return
        live = ch.live[sub.wire]
        if sub in live:
            del live[sub]
            self._metrics.subscriptions_open.dec()
        elif ch.catching.pop(sub, None) is not None:
            self._metrics.subscriptions_open.dec()
        self._mark_idle_if_empty(ch)

    def remove(self, sub: Subscriber, channels: set[str]) -> None:
        """Forget a closed connection."""
        for channel in channels:
            self.unsubscribe(sub, channel)

    def _open_channel(self, channel: str) -> _Channel:
        ready = asyncio.ensure_future(self._bus.subscribe(channel))
        ch = _Channel(channel, ready)
        ready.add_done_callback(lambda task: _confirmed(ch, task))
        self._channels[channel] = ch
        self._metrics.channels_subscribed.inc()
        return ch

    def _promote(self, ch: _Channel) -> None:
        """Move caught-up subscribers to the live set once the channel has reached them."""
        if ch.state is not ChannelState.LIVE:
            return
        for sub, catch_up in list(ch.catching.items()):
            if catch_up.pending is None and catch_up.last <= ch.last:
                del ch.catching[sub]
                ch.live[sub.wire][sub] = None

    def _mark_idle_if_empty(self, ch: _Channel) -> None:
        if ch.is_empty() and ch.idle_since is None:
            ch.idle_since = self._clock()

    def _drop_failed(self, ch: _Channel) -> None:
        """Forget a channel whose bus subscription failed, so the next subscribe retries."""
        if self._channels.get(ch.name) is ch:
            del self._channels[ch.name]
            self._metrics.channels_subscribed.dec()
            self._spawn(self._unsubscribe_bus(ch.name))

    def sweep(self) -> None:
        """Unsubscribe from the bus channels idle for longer than the grace period."""
        now = self._clock()
        for ch in list(self._channels.values()):
            idle = ch.idle_since
            if idle is not None and now - idle >= self._grace_s and ch.is_empty():
                del self._channels[ch.name]
                self._metrics.channels_subscribed.dec()
                if ch.repair_task is not None:
                    ch.repair_task.cancel()
                self._spawn(self._unsubscribe_bus(ch.name))

    async def _unsubscribe_bus(self, channel: str) -> None:
        # If the bus is down the subscription died with the connection and is not restored.
        with contextlib.suppress(BusUnavailable):
            await self._bus.unsubscribe(channel)

    # The bus listener

    def on_publication(self, channel: str, envelope: bytes) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return  # unsubscribed a moment ago
        self._metrics.publications_received.inc()
        pub = self._decode(channel, envelope)
        if pub is not None:
            self._accept(ch, pub)

    def on_bus_lost(self) -> None:
        log.warning("bus connection lost; %d channels will be repaired", len(self._channels))

    def on_bus_restored(self) -> None:
        for ch in self._channels.values():
            if ch.epoch is None or ch.state is ChannelState.SUBSCRIBING:
                continue
            if not any(True for _ in ch.subscribers()):
                ch.epoch, ch.last = None, 0  # nobody to repair for: start afresh
                continue
            self._start_repair(ch)

    # The stream of one channel

    def _accept(self, ch: _Channel, pub: Publication) -> None:
        if ch.state is ChannelState.REPAIRING:
            ch.repair_buffer.append(pub)
            if len(ch.repair_buffer) > 4 * self._history_limit:
                self._lose(ch, "repair buffer overflow")
            return
        if ch.epoch is None:
            ch.epoch = pub.epoch
        elif pub.epoch != ch.epoch:
            self._lose(ch, "epoch changed")
            ch.epoch = pub.epoch
        elif pub.offset <= ch.last:
            return  # already delivered
        elif pub.offset > ch.last + 1:
            ch.repair_buffer.append(pub)
            self._start_repair(ch)
            return
        ch.last = pub.offset
        self._fan_out(ch, pub)

    def _fan_out(self, ch: _Channel, pub: Publication) -> None:
        started = time.perf_counter()
        delivered = 0
        for wire, subs in ch.live.items():
            if subs:
                frame = pub.frame(wire)
                for sub in subs:
                    sub.push(frame)
                delivered += len(subs)
        if ch.catching:
            for sub, catch_up in ch.catching.items():
                if catch_up.pending is not None:
                    catch_up.pending.append(pub)
                elif pub.offset > catch_up.last:
                    sub.push(pub.frame(sub.wire))
                    catch_up.last = pub.offset
                    delivered += 1
            self._promote(ch)
        m = self._metrics
        m.frames_delivered.inc(delivered)
        m.fanout_duration.observe(time.perf_counter() - started)
        m.delivery_latency.observe(max(0.0, time.time() - pub.published_ms / 1000))

    def _start_repair(self, ch: _Channel) -> None:
        ch.state = ChannelState.REPAIRING
        if ch.repair_task is None or ch.repair_task.done():
            ch.repair_task = self._spawn(self._repair(ch))

    async def _repair(self, ch: _Channel) -> None:
        assert ch.epoch is not None
        since = StreamPosition(ch.epoch, ch.last)
        try:
            result = await self._history.read(ch.name, since)
        except BusUnavailable:
            return  # on_bus_restored starts it again
        if self._channels.get(ch.name) is not ch:
            return
        if not result.complete:
            self._metrics.gap_repairs.labels(result="lost").inc()
            self._lose(ch, "history does not cover the gap")
            return
        self._metrics.gap_repairs.labels(result="repaired").inc()
        buffered, ch.repair_buffer = ch.repair_buffer, []
        ch.state = ChannelState.LIVE
        for pub in (*result.publications, *buffered):
            self._accept(ch, pub)
        self._promote(ch)

    def _lose(self, ch: _Channel, why: str) -> None:
        """The channel's stream cannot be repaired: its subscribers reconnect and recover."""
        log.warning("channel %s lost its stream (%s); closing its subscribers", ch.name, why)
        for sub in list(ch.subscribers()):
            sub.close_with(CloseCode.STATE_LOST)
        ch.epoch, ch.last = None, 0
        ch.repair_buffer = []
        ch.state = ChannelState.LIVE

    # Decoding

    def _decode(self, channel: str, envelope: bytes) -> Publication | None:
        try:
            return decode_publication(channel, envelope)
        except InvalidEnvelope as exc:
            self._metrics.bus_invalid_messages.inc()
            log.warning("dropped an invalid envelope on %s: %s", channel, exc)
            return None

    def _decode_all(self, channel: str, envelopes: list[bytes]) -> list[Publication]:
        return [p for p in (self._decode(channel, e) for e in envelopes) if p is not None]

    # Tasks

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub task failed", exc_info=task.exception())

    async def close(self) -> None:
        """Cancel background work (repairs, pending unsubscribes)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._history.close()
        for ch in self._channels.values():
            ch.ready.cancel()


def _confirmed(ch: _Channel, task: asyncio.Task[None]) -> None:
    """The bus subscription of *ch* completed: it is live unless it failed."""
    if not task.cancelled() and task.exception() is None and ch.state is ChannelState.SUBSCRIBING:
        ch.state = ChannelState.LIVE
