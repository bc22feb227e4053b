"""Recovery on a worker: a subscriber catching up from its position, a channel's stream repaired.

Gap-free subscribe (docs/protocol.md#recovery): the hub registers a subscriber as *catching
up* (live publications are queued for it) before the history is read; :meth:`catch_up` then
sends the reply, the missed publications, then the queued live ones with offsets above what
the subscriber already has, and the subscriber joins the live set once the channel's stream
has reached it.

Gap repair: the hub hands every publication of a channel to the fan-out in offset order. An
offset that skips ahead, or a bus reconnect, makes the channel REPAIRING: live publications
are held while the gap is read from history, then all go out in order. If the history cannot
cover the gap, the channel's subscribers are closed with 4003 so that they reconnect and
recover (or reload) on their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol, runtime_checkable

from herald_contract.bus import BusUnavailable
from herald_contract.envelope import StreamPosition
from herald_contract.history import NO_EPOCH
from socketsrv.channel import CatchUp, Channel, ChannelState, Subscriber
from socketsrv.history import HistoryReader, Recovered
from socketsrv.metrics import Metrics
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.session import Recovery
from socketsrv.publication import Publication

log = logging.getLogger(__name__)

REPAIR_RETRY_S = 0.5
"""How soon a repair whose history read failed while the bus is live tries again."""

OnSubscribed = Callable[[StreamPosition, Recovery], None]
Spawn = Callable[[Coroutine[Any, Any, None]], Any]


@runtime_checkable
class ReplayBudget(Protocol):
    """A subscriber that bounds what recoveries replay to it (a connection does)."""

    def take_replay(self, nbytes: int) -> bool:
        """Whether *nbytes* of missed publications may be replayed now (charged if so)."""
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
    ) -> None:
        self._history = history
        self._metrics = metrics
        self._buffer_limit = buffer_limit
        self._deliver = deliver
        self._is_current = is_current
        self._spawn = spawn

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
        for pub in (*result.publications, *queued):
            if pub.epoch == position.epoch and pub.offset > last:
                sub.push(pub.frame(sub.wire))
                last = pub.offset
        progress.last = last
        ch.promote()

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


def _replay_allowed(sub: Subscriber, result: Recovered, last: int) -> bool:
    """Whether *sub*'s replay budget covers the publications after *last* in *result*."""
    if not isinstance(sub, ReplayBudget):
        return True
    epoch, wire = result.position.epoch, sub.wire
    nbytes = sum(
        len(pub.frame(wire))
        for pub in result.publications
        if pub.epoch == epoch and pub.offset > last
    )
    return nbytes == 0 or sub.take_replay(nbytes)
