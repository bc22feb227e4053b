"""Who is subscribed where on this worker, and the fan-out of each publication.

The hub reference-counts local subscribers per channel: the first one makes the worker
subscribe on the bus, and a channel left without subscribers is unsubscribed only after
``unsubscribe_grace_s`` (:meth:`Hub.expire_idle`, called by the worker's one shared sweep,
not a timer per channel), so page reloads do not churn Redis subscriptions.

Fan-out never awaits a client: a publication is decoded once, encoded once per wire format
(:meth:`Publication.frame`), and the same bytes are handed to every subscriber's bounded
:meth:`Subscriber.push`. Push is synchronous and must not call back into the hub.

A subscribe waits until the bus subscription is confirmed, registers the subscriber as
catching up, reads the history, and leaves the rest (the reply, the replay, joining the live
set) to socketsrv/recovery.py, which also repairs a channel's stream when it skips an offset
or the bus reconnects.

The hub also tells its connections whether live delivery works (docs/protocol.md#delivery):
a connection attends once its connect is answered (:meth:`Hub.attend`), and every change of
:class:`DeliveryState` that a client can see is pushed to all of them, one frame per wire
format built once (socketsrv/protocol/frames.py), never awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from herald_contract.bus import Bus, BusUnavailable
from herald_contract.envelope import InvalidEnvelope, StreamPosition
from herald_contract.errors import InvalidChannel
from herald_contract.history import NO_EPOCH, HistorySettings
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import default_namespaces
from socketsrv.channel import CatchUp, Channel, ChannelState, Subscriber
from socketsrv.history import (
    FIRST_READ_PUBLICATIONS,
    HistoryReader,
    Recovered,
    suffix_after,
)
from socketsrv.metrics import HistogramBatch, Metrics, NamespaceSeries, namespace_series
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.frames import DELIVERY, Delivery
from socketsrv.publication import Publication, decode_publication
from socketsrv.recovery import (
    ChannelRecovery,
    OnSubscribed,
    has_replay_budget,
    is_paced,
)
from socketsrv.tail import Retention, Tails

__all__ = ["ChannelLimit", "ChannelState", "DeliveryState", "Hub", "OnSubscribed", "Subscriber"]

log = logging.getLogger(__name__)


class ChannelLimit(Exception):
    """The worker holds ``max_channels`` channels: a subscribe to another one is refused."""


class DeliveryState(enum.Enum):
    """Whether live publications reach this worker, as its connections are told::

        LIVE --bus lost--> PAUSED --bus restored--> RESUMING --channels repaired--> LIVE
                             ^                          |
                             +--------bus lost----------+

    Clients see two states: ``paused`` (PAUSED and RESUMING) and ``live``. RESUMING lasts
    until every channel the bus restore set repairing is repaired (its missed publications
    pushed) or lost (its subscribers closed with 4003). A connection that attends while the
    bus is not live (it has not started yet, or its loss is being noticed) is told paused and
    makes the hub PAUSED; :meth:`Hub.bus_started` ends a pause that came from a late start.
    """

    LIVE = "live"
    PAUSED = "paused"
    RESUMING = "resuming"


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
        max_channels: int | None = None,
        namespaces: Namespaces | None = None,
        retention: Retention | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """*namespaces*: the installation's, for the conflation keys of publications and the
        ``namespace`` label of the metrics (None: the shipped file's). Channel names come
        parsed against the same file: a kind it lacks is refused (:meth:`subscribe`).
        *retention*: each channel's history size and TTL (``HistorySettings.retention``;
        None: *history_limit* and the default TTL), so that a subscribe answered from what
        the worker holds never gets more than the history would give (socketsrv/tail.py)."""
        self._bus = bus
        default_ttl_s = HistorySettings().history_ttl_s
        self.tails = Tails(retention or (lambda _: (history_limit, default_ttl_s)))
        self._wall_clock = wall_clock
        self._fanout_duration = HistogramBatch(metrics.fanout_duration)
        self._delivery_latency = HistogramBatch(metrics.delivery_latency)
        self._read_here = metrics.subscribe_reads.labels(source="worker")
        self._read_from_bus = metrics.subscribe_reads.labels(source="bus")
        self._namespaces = namespaces
        kinds = (namespaces if namespaces is not None else default_namespaces()).kinds
        self._series = namespace_series(metrics, kinds)
        self._max_channels = max_channels
        self._metrics = metrics
        self._grace_s = unsubscribe_grace_s
        self._clock = clock
        self._channels: dict[str, Channel] = {}
        self._delivery = DeliveryState.LIVE
        self._audience: dict[WireFormat, dict[Subscriber, None]] = {w: {} for w in WireFormat}
        """The connections told about delivery (attended, not yet removed), per wire format."""
        self._resuming: asyncio.Task[None] | None = None
        self.fanning_out: Publication | None = None
        """The live publication whose frames are being pushed, None outside a fan-out: a
        connection past its conflation mark reads it to learn the channel, offset and key of
        the frame it is handed (socketsrv/outbox.py) without the fan-out paying for it."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._history = HistoryReader(bus, limit=history_limit, decode=self._decode_all)
        self._recovery = ChannelRecovery(
            self._history,
            metrics,
            buffer_limit=4 * history_limit,
            deliver=self._accept,
            is_current=lambda ch: self._channels.get(ch.name) is ch,
            spawn=self._spawn,
        )

    # Queries (tests and metrics)

    def channel_state(self, name: str) -> ChannelState | None:
        ch = self._channels.get(name)
        return None if ch is None else ch.state

    def channel_offset(self, name: str) -> int | None:
        """The offset of the last publication the worker holds of *name* (None: not held)."""
        ch = self._channels.get(name)
        return None if ch is None else ch.last

    def subscriber_count(self, name: str) -> int:
        ch = self._channels.get(name)
        return 0 if ch is None else sum(1 for _ in ch.subscribers())

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    @property
    def delivery(self) -> DeliveryState:
        return self._delivery

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
        pushed. Raises :class:`BusUnavailable` when the bus cannot be reached,
        :class:`ChannelLimit` when *channel* would be one more than ``max_channels``,
        :class:`InvalidChannel` when its kind is not one of the hub's namespaces (a name the
        session did not parse: a bug); returns quietly if *sub* was removed meanwhile.
        """
        ch = self._channels.get(channel)
        if ch is None:
            limit = self._max_channels
            if limit is not None and len(self._channels) >= limit:
                # Each channel costs its state here and a bus subscription (docs/protocol.md).
                raise ChannelLimit(channel)
            ch = self._open_channel(channel, self._series_of(channel))
        progress = self._catching(ch, sub)
        try:
            if not ch.ready.done():
                await asyncio.wait([ch.ready])  # its failure is checked below, for everyone
            if ch.catching.get(sub) is not progress:
                return  # removed while the bus subscription was made
            self._check_confirmed(ch)
            result = await self._read_for(sub, ch, since)
        except BaseException:
            if ch.catching.get(sub) is progress:
                del ch.catching[sub]
                self._metrics.subscriptions_open.dec()
                ch.series.subscriptions.dec()
            self._mark_idle_if_empty(ch)
            raise
        if ch.catching.get(sub) is progress:  # else removed while the history was read
            self._recovery.catch_up(ch, sub, progress, since, result, on_subscribed)
            self.tails.seed(ch, result)

    def subscribe_at_once(
        self,
        sub: Subscriber,
        channel: str,
        since: StreamPosition | None,
        on_subscribed: OnSubscribed,
    ) -> bool:
        """:meth:`subscribe` done before this returns, when the channel is live here and the
        worker holds the answer (socketsrv/tail.py): no task, no await, the reply and the
        replay pushed now. False: nothing was done, :meth:`subscribe` must be awaited."""
        ch = self._channels.get(channel)
        if ch is None:
            return False
        if since is not None and has_replay_budget(sub) and not sub.replay_affordable():
            return False  # the refused-replay gate reads the position (_read_for)
        held = self._held(ch, since)  # None unless the channel is LIVE (its bus subscription done)
        if held is None:
            return False
        progress = self._catching(ch, sub)
        self._recovery.catch_up(ch, sub, progress, since, held, on_subscribed)
        return True

    def _catching(self, ch: Channel, sub: Subscriber) -> CatchUp:
        """Register *sub* on *ch* as catching up (its subscribe counted): from here on every
        publication the channel hands on reaches it, queued until its reply."""
        ch.idle_since = None
        progress = CatchUp()
        ch.catching[sub] = progress
        self._metrics.subscriptions_open.inc()
        ch.series.subscriptions.inc()
        return progress

    async def _read_for(
        self, sub: Subscriber, ch: Channel, since: StreamPosition | None
    ) -> Recovered:
        """The history read of *sub*'s subscribe: the position only when *sub*'s replay
        budget could not cover a replay as big as its last refused one (issue 11: a
        subscribe-from-0 loop made every refused replay a full history read); then the
        recovery is failed unless nothing was missed. A subscriber whose replays are paced
        reads at most a first read; the rest of a longer replay is read in slices. Answered
        without a read when the channel is live here and holds what is asked
        (socketsrv/tail.py)."""
        if since is None or not has_replay_budget(sub) or sub.replay_affordable():
            held = self._held(ch, since)
            if held is not None:
                return held
            paced = is_paced(sub)
            limit = FIRST_READ_PUBLICATIONS if paced else None
            self._read_from_bus.inc()
            return await self._history.read(ch.name, since, limit)
        held = self._held(ch, None)
        if held is None:
            self._read_from_bus.inc()
            held = await self._history.read(ch.name, None)
        recovered = suffix_after(held.position, [], since)
        if not recovered.complete:
            self._metrics.replays_refused.inc()
        return recovered

    def _held(self, ch: Channel, since: StreamPosition | None) -> Recovered | None:
        """A subscribe's read answered from the channel's stream as this worker holds it,
        when the channel is live on a live bus (socketsrv/tail.py); None: read the bus."""
        if (
            ch.state is not ChannelState.LIVE
            or self._delivery is not DeliveryState.LIVE
            or not self._history.bus_live
        ):
            return None
        held = self.tails.answer(ch, since, int(self._wall_clock() * 1000))
        if held is not None:
            self._read_here.inc()
        return held

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        """Stop delivering *channel* to *sub*; unknown pairs are ignored."""
        ch = self._channels.get(channel)
        if ch is None:
            return
        live = ch.live[sub.wire]
        if sub in live:
            del live[sub]
            self._metrics.subscriptions_open.dec()
            ch.series.subscriptions.dec()
        elif ch.catching.pop(sub, None) is not None:
            self._metrics.subscriptions_open.dec()
            ch.series.subscriptions.dec()
        self._mark_idle_if_empty(ch)

    def remove(self, sub: Subscriber, channels: set[str]) -> None:
        """Forget a closed connection (its channels, and its place in the audience)."""
        self._audience[sub.wire].pop(sub, None)
        for channel in channels:
            self.unsubscribe(sub, channel)

    def _series_of(self, channel: str) -> NamespaceSeries:
        series = self._series.get(channel.partition(":")[0])
        if series is None:  # the label set stays the file's kinds (socketsrv/metrics.py)
            raise InvalidChannel(channel, "unknown kind")
        return series

    def _open_channel(self, channel: str, series: NamespaceSeries) -> Channel:
        ready = asyncio.ensure_future(self._bus.subscribe(channel))
        ch = Channel(channel, ready, series)
        ready.add_done_callback(ch.confirmed)
        self._channels[channel] = ch
        self._metrics.channels_subscribed.inc()
        return ch

    def _mark_idle_if_empty(self, ch: Channel) -> None:
        if ch.is_empty() and ch.idle_since is None:
            ch.idle_since = self._clock()

    def _check_confirmed(self, ch: Channel) -> None:
        """Raise if the channel's bus subscription failed, forgetting the channel so that
        the next subscribe tries again (rather than failing until the channel expires)."""
        ready = ch.ready
        exc = None if ready.cancelled() else ready.exception()
        if not ready.cancelled() and exc is None:
            return
        if self._channels.get(ch.name) is ch:
            self._forget(ch)
        if exc is None or isinstance(exc, BusUnavailable):
            why = "cancelled" if exc is None else exc.why
            raise BusUnavailable(f"cannot subscribe to {ch.name}: {why}") from exc
        raise exc

    def expire_idle(self) -> None:
        """Unsubscribe from the bus channels idle for longer than the grace period; drop
        the publications kept longer than the tails' window (socketsrv/tail.py)."""
        now = self._clock()
        now_ms = int(self._wall_clock() * 1000)
        for ch in list(self._channels.values()):
            if ch.tail is not None:
                self.tails.prune(ch, now_ms)
            idle = ch.idle_since
            if idle is not None and now - idle >= self._grace_s and ch.is_empty():
                if ch.repair_task is not None:
                    ch.repair_task.cancel()
                self._forget(ch)

    def _forget(self, ch: Channel) -> None:
        del self._channels[ch.name]
        self._metrics.channels_subscribed.dec()
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
        ch.series.received += 1  # exported at the next sweep (flush_counts)
        pub = self._decode(channel, envelope)
        if pub is not None:
            self._accept(ch, pub)

    def on_bus_lost(self) -> None:
        log.warning("bus connection lost; %d channels will be repaired", len(self._channels))
        if self._resuming is not None:
            self._resuming.cancel()
            self._resuming = None
        if self._delivery is DeliveryState.LIVE:
            self._tell(DeliveryState.PAUSED)
        else:
            self._delivery = DeliveryState.PAUSED  # clients were told paused already

    def on_bus_restored(self) -> None:
        self._recovery.bus_restored(self._channels.values())
        if self._delivery is not DeliveryState.LIVE:
            self._delivery = DeliveryState.RESUMING
            self._resuming = self._spawn(self._resume())

    # What the connections are told about delivery (docs/protocol.md#delivery)

    def attend(self, sub: Subscriber) -> None:
        """Tell *sub* about delivery from now on (a connection whose connect was answered).

        Pushes the paused frame at once unless delivery is live (the connection calls this
        just before it pushes the connect reply). :meth:`remove` ends the attendance.
        """
        self._audience[sub.wire][sub] = None
        if self._delivery is DeliveryState.LIVE and not self._bus.live:
            self._delivery = DeliveryState.PAUSED  # not started yet, or its loss not yet told
        if self._delivery is not DeliveryState.LIVE:
            sub.push(DELIVERY[Delivery.PAUSED][sub.wire])

    def bus_started(self) -> None:
        """The bus started after the worker began listening: a pause told to connections
        that came before is over (no channel can exist before the bus is live)."""
        if self._delivery is DeliveryState.PAUSED and self._bus.live:
            self._tell(DeliveryState.LIVE)

    async def _resume(self) -> None:
        """Wait for the repairs the restore started (and any started meanwhile); then live."""
        while pending := self._repairs():
            await asyncio.wait(pending)
        if self._delivery is DeliveryState.RESUMING and self._bus.live:
            self._resuming = None
            self._tell(DeliveryState.LIVE)

    def _repairs(self) -> set[asyncio.Task[None]]:
        return {
            task
            for ch in self._channels.values()
            if ch.state is ChannelState.REPAIRING
            and (task := ch.repair_task) is not None
            and not task.done()
        }

    def _tell(self, state: DeliveryState) -> None:
        """Enter *state* and push its frame to every attending connection (never awaited)."""
        self._delivery = state
        told = Delivery.LIVE if state is DeliveryState.LIVE else Delivery.PAUSED
        for wire, subs in self._audience.items():
            if subs:
                frame = DELIVERY[told][wire]
                for sub in subs:
                    sub.push(frame)
        log.info("delivery %s: told %d connections", told.value, self.audience_count)

    @property
    def audience_count(self) -> int:
        return sum(len(subs) for subs in self._audience.values())

    # The stream of one channel, then the fan-out

    def _accept(self, ch: Channel, pub: Publication) -> None:
        """The channel's next publication, if it is: duplicates dropped, gaps repaired first."""
        if ch.state is ChannelState.REPAIRING:
            self._recovery.hold(ch, pub)
            return
        if ch.epoch == NO_EPOCH:
            # Subscribers were told nothing was published: the channel's first epoch is
            # their stream from offset 1, not a change of epoch (docs/protocol.md#recovery).
            ch.epoch = pub.epoch
        if ch.epoch is None:
            ch.epoch = pub.epoch
        elif pub.epoch != ch.epoch:
            self._recovery.lose(ch, "epoch changed")
            ch.epoch = pub.epoch
        elif pub.offset <= ch.last:
            return  # already delivered
        elif pub.offset > ch.last + 1:
            ch.repair_buffer.append(pub)
            self._recovery.start_repair(ch)
            return
        ch.last = pub.offset
        self.tails.remember(ch, pub)
        self._fan_out(ch, pub)

    def _fan_out(self, ch: Channel, pub: Publication) -> None:
        started = time.perf_counter()
        delivered = 0
        self.fanning_out = pub
        for wire, subs in ch.live.items():
            if subs:
                frame = pub.frame(wire)
                for sub in subs:
                    sub.push(frame)
                delivered += len(subs)
        if ch.catching:
            for sub, progress in ch.catching.items():
                if progress.pending is not None:
                    progress.pending.append(pub)
                elif progress.paced:
                    continue  # its paced replay reads this one from history
                elif pub.offset > progress.last:
                    sub.push(pub.frame(sub.wire))
                    progress.last = pub.offset
                    delivered += 1
            ch.promote()
        self.fanning_out = None
        ch.series.delivered += delivered  # exported at the next sweep (flush_counts)
        self._fanout_duration.observe(time.perf_counter() - started)
        self._delivery_latency.observe(max(0.0, time.time() - pub.published_ms / 1000))

    def flush_counts(self) -> None:
        """Add the publications and deliveries counted by namespace, and the fan-outs'
        durations and latencies, since the last call to their exported series
        (socketsrv/metrics.py: NamespaceSeries, HistogramBatch); the worker calls it after
        every sweep and when it stops."""
        for series in self._series.values():
            series.flush()
        self._fanout_duration.flush()
        self._delivery_latency.flush()

    # Position checks (socketsrv/positions.py)

    def channels(self) -> list[Channel]:
        """The channels held now (a snapshot)."""
        return list(self._channels.values())

    def holds(self, ch: Channel) -> bool:
        """Whether *ch* is still the channel the hub holds under its name."""
        return self._channels.get(ch.name) is ch

    def repair(self, ch: Channel) -> asyncio.Task[None] | None:
        """Repair *ch*'s stream from history as a skipped offset would; the repair's task."""
        self._recovery.start_repair(ch)
        return ch.repair_task

    # Decoding

    def _decode(self, channel: str, envelope: bytes) -> Publication | None:
        try:
            return decode_publication(channel, envelope, self._namespaces)
        except InvalidEnvelope as exc:
            self._metrics.bus_invalid_messages.inc()
            log.warning("dropped an invalid envelope on %s: %s", channel, exc)
            return None

    def _decode_all(self, channel: str, envelopes: list[bytes]) -> list[Publication]:
        return [p for p in (self._decode(channel, e) for e in envelopes) if p is not None]

    # Tasks

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
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
        self._recovery.heap_trim.cancel()
        for ch in self._channels.values():
            ch.ready.cancel()
