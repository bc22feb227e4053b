"""Recovery on a worker: a subscriber catching up from its position, a channel's stream repaired.

Gap-free subscribe (docs/protocol.md#recovery): the hub registers a subscriber as *catching
up* (live publications are queued for it) before the history is read; :meth:`catch_up` then
sends the reply, the missed publications, then the queued live ones with offsets above what
the subscriber already has, and the subscriber joins the live set once the channel's stream
has reached it.

Paced replay (issue 12, item 1): a replay bigger than the room the subscriber's connection
has below its replay mark (:class:`PacedSubscriber`) is not pushed at once. The subscriber
stays catching up with ``paced`` set (live publications are not pushed to it), and a feed
pushes one slice of history whenever the connection has drained below the mark, reading the
next slice from history after the last offset it pushed, until it reaches the channel's
stream. Before, a replay went into the outgoing buffer whole: past ``outbox_max_bytes`` the
client was closed 4001, came back and asked for an even bigger replay (about 8 times each
in the slow-client experiment, bench/results/SLOW.md), and the worker's memory grew with
every replay it held. A feed holds one slice at a time; if the history no longer holds the
next offset (trimmed while the client read slowly, or the epoch changed), the subscriber is
closed with 4003: it reconnects and its recovery says ``failed``. The subscribe's own read
holds at most :data:`socketsrv.history.FIRST_READ_PUBLICATIONS`; a replay longer than that
is paced whatever its size, and its budget is charged at the subscribe from the count missed
(:func:`replay_bytes`). Slices start at most :data:`SLICES_PER_TURN` per loop turn across
the worker (:class:`ReplayTurns`), so a live publication never waits behind more than that
many slices; the heap's free pages are given back within an interval of each paced replay's
start and end (:class:`HeapTrim`).

Gap repair: the hub hands every publication of a channel to the fan-out in offset order. An
offset that skips ahead, or a bus reconnect, makes the channel REPAIRING: live publications
are held while the gap is read from history, then all go out in order. If the history cannot
cover the gap, the channel's subscribers are closed with 4003 so that they reconnect and
recover (or reload) on their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol, TypeGuard, runtime_checkable

from herald_contract.bus import BusUnavailable
from herald_contract.envelope import StreamPosition
from herald_contract.history import NO_EPOCH
from socketsrv.channel import CatchUp, Channel, ChannelState, Subscriber
from socketsrv.heap import HeapTrim
from socketsrv.history import HistoryReader, Recovered, suffix_after
from socketsrv.metrics import Metrics
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import Recovery
from socketsrv.publication import Publication

log = logging.getLogger(__name__)

REPAIR_RETRY_S = 0.5
"""How soon a repair whose history read failed while the bus is live tries again."""

OnSubscribed = Callable[[StreamPosition, Recovery], None]
Spawn = Callable[[Coroutine[Any, Any, None]], Any]


@runtime_checkable
class PacedSubscriber(Subscriber, Protocol):
    """A subscriber whose replays are paced to what it drains (a connection is)."""

    def replay_room(self) -> int:
        """Bytes a replay may queue now (0 or less: wait for :meth:`replay_drained`)."""
        ...

    async def replay_drained(self) -> bool:
        """Wait until :meth:`replay_room` is above 0; False once it takes no more frames."""
        ...


_PACED: dict[type, bool] = {}
_BUDGETED: dict[type, bool] = {}


def is_paced(sub: object) -> TypeGuard[PacedSubscriber]:
    """``isinstance(sub, PacedSubscriber)``, remembered per class: the runtime-checkable
    protocol's check looks up every member, 3-6% of a worker's CPU in a connect loop."""
    known = _PACED.get(type(sub))
    if known is None:
        known = _PACED[type(sub)] = isinstance(sub, PacedSubscriber)
    return known


def has_replay_budget(sub: object) -> TypeGuard[ReplayBudget]:
    """``isinstance(sub, ReplayBudget)``, remembered per class (see :func:`is_paced`)."""
    known = _BUDGETED.get(type(sub))
    if known is None:
        known = _BUDGETED[type(sub)] = isinstance(sub, ReplayBudget)
    return known


SLICE_MAX_PUBLICATIONS = 256
"""Most publications one slice read asks for (a slice is bounded in bytes by the room)."""

SLICES_PER_TURN = 4
"""Most paced-replay slices that start in one event-loop turn, across all of a worker's
replays (each at most a replay mark, 64 KiB by default): between two turns the loop reads its
sockets, so a live publication waits behind at most this many slices. Before, every replay
whose client had drained went on in the same turn, and the fast clients' p99 rose to about
0.6 s while 20 replays ran (bench/results/SLOW.md)."""


class ReplayTurns:
    """Hands out at most *per_turn* slice starts per event-loop turn, first come first served.

    :meth:`take` returns at once while the turn has a start left; past that it waits for a
    later turn (one ``call_soon`` per turn while anyone waits, so the loop polls its sockets
    in between). A cancelled waiter gives its place up.
    """

    def __init__(self, per_turn: int = SLICES_PER_TURN) -> None:
        if per_turn < 1:
            raise ValueError(f"per_turn must be at least 1, not {per_turn}")
        self._per_turn = per_turn
        self._used = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_scheduled = False

    @property
    def waiting(self) -> int:
        """Slices waiting for a later turn (tests and debugging)."""
        return sum(1 for w in self._waiting if not w.done())

    async def take(self) -> None:
        """Wait for a slice start in this turn or a later one."""
        if self._used < self._per_turn and not self._waiting:
            self._used += 1
            self._schedule()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._schedule()
        await waiter

    def _schedule(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_scheduled = False
        self._used = 0
        waiting = self._waiting
        while waiting and self._used < self._per_turn:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._used += 1
        if waiting or self._used:
            self._schedule()


@runtime_checkable
class ReplayBudget(Protocol):
    """A subscriber that bounds what recoveries replay to it (a connection does)."""

    def take_replay(self, nbytes: int) -> bool:
        """Whether *nbytes* of missed publications may be replayed now (charged if so)."""
        ...

    def replay_affordable(self) -> bool:
        """Whether a replay as big as the last one refused could be charged now: when not,
        the subscribe reads the channel's position only, not its history (a refused replay
        still cost a full history read before)."""
        ...


def outcome(since: StreamPosition | None, result: Recovered) -> tuple[Recovery, int]:
    """The recovery a subscribe from *since* gets, and the last offset it already has."""
    if since is None:
        return Recovery.NONE, result.position.offset
    if result.complete:
        return Recovery.RECOVERED, since.offset
    return Recovery.FAILED, result.position.offset


class ChannelRecovery:
    """Catch-up of subscribers and repair of channel streams for one hub.

    *deliver* is the hub's entry for a channel's next publication (it checks the offset and
    fans out); *is_current* tells whether the hub still holds a channel.
    """

    def __init__(
        self,
        history: HistoryReader,
        metrics: Metrics,
        *,
        buffer_limit: int,
        deliver: Callable[[Channel, Publication], None],
        is_current: Callable[[Channel], bool],
        spawn: Spawn,
        turns: ReplayTurns | None = None,
        heap_trim: HeapTrim | None = None,
    ) -> None:
        self._history = history
        self._metrics = metrics
        self._buffer_limit = buffer_limit
        self._deliver = deliver
        self._is_current = is_current
        self._spawn = spawn
        self.turns = turns if turns is not None else ReplayTurns()
        self.heap_trim = heap_trim if heap_trim is not None else HeapTrim()
        self.feeds = 0
        """Paced replays running now."""

    # A subscriber catching up

    def catch_up(
        self,
        ch: Channel,
        sub: Subscriber,
        progress: CatchUp,
        since: StreamPosition | None,
        result: Recovered,
        on_subscribed: OnSubscribed,
    ) -> None:
        """Reply to *sub*, replay what it missed and what came live meanwhile, in order."""
        if _read_before_first_publication(ch, progress, result):
            # Nothing was published when the history was read, and the channel's first
            # publications overtook the reply on the pub/sub connection: they are its
            # stream from offset 1, all queued here, not a change of epoch.
            # A subscriber from another epoch's position is still told recovery failed.
            assert ch.epoch is not None
            result = suffix_after(StreamPosition(ch.epoch, 0), [], since)
        position = result.position
        if ch.epoch is None:
            ch.epoch, ch.last = position.epoch, position.offset
        elif ch.epoch == NO_EPOCH and position.epoch != NO_EPOCH:
            # The channel's first epoch came into being after an earlier subscriber's read:
            # its publications are on their way live, from offset 1, and the stream adopts it
            # with the first of them (Hub._accept).
            pass
        elif ch.epoch != position.epoch:
            self.lose(ch, "epoch changed under a subscribe")
            return
        recovery, last = outcome(since, result)
        if recovery is Recovery.RECOVERED and not _replay_allowed(sub, result, last):
            # Over the connection's replay budget (issue 11, item 8): the subscriber
            # reloads, as when the history does not cover it (docs/protocol.md#limits).
            recovery, last = Recovery.FAILED, position.offset
        self._metrics.recoveries.labels(result=recovery.value).inc()
        on_subscribed(position, recovery)
        queued, progress.pending = progress.pending or [], None
        if result.more:
            queued = []  # they follow the unread rest: the paced replay reads them in turn
        missed: list[Publication] = []
        for pub in (*result.publications, *queued):
            if pub.epoch == position.epoch and pub.offset > last:
                missed.append(pub)
                last = pub.offset
        if missed and is_paced(sub):
            room = sub.replay_room()
            frames = [pub.frame(sub.wire) for pub in missed]
            if result.more or sum(map(len, frames)) > room:
                # Too big to queue at once, or not all read: the first slice now, the rest as
                # it drains (the live ones queued meanwhile are read from history in turn).
                progress.last = _push_slice(sub, missed, frames, room, progress.last)
                progress.paced = True
                mean = max(1, sum(map(len, frames)) // len(frames))
                self._metrics.paced_replays.labels(result="started").inc()
                self.feeds += 1
                self._spawn(self._feed(ch, sub, progress, position.epoch, mean))
                # The first read's frames are dropped once this returns: the next trim (at
                # most an interval away) gives their pages back even if this replay runs on.
                asyncio.get_running_loop().call_soon(self.heap_trim.request)
                return
        for pub in missed:
            sub.push(pub.frame(sub.wire))
        progress.last = last
        ch.promote()

    async def _feed(
        self,
        ch: Channel,
        sub: PacedSubscriber,
        progress: CatchUp,
        epoch: str,
        mean_frame_bytes: int,
    ) -> None:
        """Push *sub*'s replay slice by slice as it drains, until it reaches the stream."""

        def current() -> bool:
            return self._is_current(ch) and ch.catching.get(sub) is progress

        result = "abandoned"
        try:
            while current() and await sub.replay_drained() and current():
                await self.turns.take()  # live fan-out first (SLICES_PER_TURN)
                if not current():
                    return
                if progress.last >= ch.last:
                    # Reached the stream within this turn: from here on the fan-out pushes
                    # every offset above progress.last (socketsrv/hub.py).
                    progress.paced = False
                    ch.promote()
                    result = "caught_up"
                    return
                room = sub.replay_room()
                count = max(1, min(SLICE_MAX_PUBLICATIONS, room // mean_frame_bytes))
                since = StreamPosition(epoch, progress.last)
                try:
                    read = await self._history.read(ch.name, since, count)
                except BusUnavailable:
                    await asyncio.sleep(REPAIR_RETRY_S)  # bounded by the subscriber's life
                    continue
                if not current():
                    return
                if not read.complete or not read.publications:
                    result = "lost"
                    log.info("paced replay of %s lost its history; closing 4003", ch.name)
                    sub.close_with(CloseCode.STATE_LOST)
                    return
                frames = [pub.frame(sub.wire) for pub in read.publications]
                if frames:
                    mean_frame_bytes = max(1, sum(map(len, frames)) // len(frames))
                progress.last = _push_slice(
                    sub, read.publications, frames, sub.replay_room(), progress.last
                )
        finally:
            self._metrics.paced_replays.labels(result=result).inc()
            self.feeds -= 1
            self.heap_trim.request()

    # A channel's stream

    def hold(self, ch: Channel, pub: Publication) -> None:
        """Keep a live publication that came while *ch* is repairing (bounded)."""
        ch.repair_buffer.append(pub)
        if len(ch.repair_buffer) > self._buffer_limit:
            self.lose(ch, "repair buffer overflow")

    def start_repair(self, ch: Channel) -> None:
        """Read the gap after the channel's position from history (one repair at a time)."""
        ch.state = ChannelState.REPAIRING
        if ch.repair_task is None or ch.repair_task.done():
            ch.repair_task = self._spawn(self._repair(ch))

    async def _repair(self, ch: Channel) -> None:
        assert ch.epoch is not None
        since = StreamPosition(ch.epoch, ch.last)
        while True:
            try:
                result = await self._history.read(ch.name, since)
                break
            except BusUnavailable:
                # After an outage, bus_restored starts the repair again. But a read can also
                # fail while the bus is live: a cluster shard's primary has just changed and
                # the command client has not yet learned where the slot went. Waiting for
                # the next bus_restored would leave the channel held until some other fault.
                if not self._history.bus_live:
                    return
                await asyncio.sleep(REPAIR_RETRY_S)
                if not self._is_current(ch) or ch.state is not ChannelState.REPAIRING:
                    return
        if not self._is_current(ch):
            return
        if not result.complete:
            self._metrics.gap_repairs.labels(result="lost").inc()
            self.lose(ch, "history does not cover the gap")
            return
        self._metrics.gap_repairs.labels(result="repaired").inc()
        buffered, ch.repair_buffer = ch.repair_buffer, []
        ch.state = ChannelState.LIVE
        for pub in (*result.publications, *buffered):
            self._deliver(ch, pub)
        ch.promote()

    def lose(self, ch: Channel, why: str) -> None:
        """The channel's stream cannot be repaired: its subscribers reconnect and recover."""
        log.warning("channel %s lost its stream (%s); closing its subscribers", ch.name, why)
        for sub in list(ch.subscribers()):
            sub.close_with(CloseCode.STATE_LOST)
        ch.reset_stream()
        ch.state = ChannelState.LIVE

    def bus_restored(self, channels: Iterable[Channel]) -> None:
        """Publications during the bus outage were not delivered: repair every live stream."""
        for ch in channels:
            if ch.epoch is None or ch.state is ChannelState.SUBSCRIBING:
                continue
            if ch.is_empty():
                ch.reset_stream()  # nobody to repair for: start afresh
                continue
            self.start_repair(ch)


def _push_slice(
    sub: PacedSubscriber, pubs: list[Publication], frames: list[bytes], room: int, last: int
) -> int:
    """Push the frames of *pubs* after offset *last* that fit in *room* bytes, at least one
    (a replay always moves on); the last offset pushed."""
    push = sub.push
    used = 0
    for pub, frame in zip(pubs, frames, strict=True):
        if pub.offset <= last:
            continue
        if used and used + len(frame) > room:
            break
        push(frame)
        used += len(frame)
        last = pub.offset
    return last


def replay_bytes(result: Recovered, last: int, wire: WireFormat) -> int:
    """The bytes a replay of the publications after *last* up to *result*'s position costs:
    the frames read, and for those not read yet (a first read is bounded) as many times the
    mean frame read (docs/protocol.md#limits)."""
    epoch = result.position.epoch
    read = [len(p.frame(wire)) for p in result.publications if p.epoch == epoch and p.offset > last]
    missed = result.position.offset - last
    if not read or missed <= len(read):
        return sum(read)
    return sum(read) + (missed - len(read)) * math.ceil(sum(read) / len(read))


def _replay_allowed(sub: Subscriber, result: Recovered, last: int) -> bool:
    """Whether *sub*'s replay budget covers the publications after *last* in *result*."""
    wire = sub.wire
    if not has_replay_budget(sub):
        return True
    nbytes = replay_bytes(result, last, wire)
    return nbytes == 0 or sub.take_replay(nbytes)


def _read_before_first_publication(ch: Channel, progress: CatchUp, result: Recovered) -> bool:
    """Whether *result* was read before the channel's first publication, which then came
    live to this subscriber from offset 1 while the read's reply was on its way (the
    subscriber was catching up before the read was sent, so it queued every one)."""
    if result.position.epoch != NO_EPOCH or ch.epoch in (None, NO_EPOCH):
        return False
    queued = progress.pending
    if not queued:
        return False
    return queued[0].epoch == ch.epoch and queued[0].offset == 1
