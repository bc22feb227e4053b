"""Position checks: finding a channel whose last publications live delivery silently lost.

Redis pub/sub is at most once. A worker repairs a gap from history when a later offset
arrives (socketsrv/recovery.py), or after a bus reconnect; but when pub/sub drops the last
publications of a channel that then goes quiet, nothing later reveals the gap, and the
channel's subscribers would wait for ever (issue 12, item 3).

So every ``position_check_interval_s`` the worker compares each live channel's stream (the
epoch and last offset it delivered) with the channel's position on the bus. The visits are
spread over the interval: every ``interval / TICKS_PER_INTERVAL`` a tick checks the next
share of the channels held at the start of the round, so the cost follows the channels a
worker holds, never its connections, and never comes as one burst. A tick reads its share
with :meth:`herald_contract.bus.Bus.positions`, :data:`PIPELINE_READS` channels per call
(one round trip each).

Behind twice, then repaired. A stream is *behind* a position that holds a publication it has
not delivered: a higher offset of its epoch, or any offset of another epoch. One check that
finds it behind proves nothing: the publication may be on its way over the pub/sub
connection, which the read did not travel on (under load a worker reads that connection
late). The checker notes the position it read; when the next check of the channel, an
interval later, finds the stream still behind the *noted* position, that publication has been
missing for a whole interval, and the channel is repaired from history exactly as a skipped
offset would be (:meth:`socketsrv.hub.Hub.repair`): in order, each offset once, and its
subscribers closed with 4003 when the history no longer covers the gap or the epoch
changed. A lost tail is therefore delivered between one and two intervals after it was
published. Channels being subscribed or repaired, and channels without subscribers, are
not checked; neither is anything while the bus is not live (its restore repairs every
channel anyway).
"""

from __future__ import annotations

import asyncio
import logging
import math

from herald_contract.bus import Bus, BusUnavailable
from herald_contract.envelope import StreamPosition
from herald_contract.history import NO_EPOCH
from socketsrv.channel import Channel, ChannelState
from socketsrv.history import PIPELINE_READS
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics

log = logging.getLogger(__name__)

TICKS_PER_INTERVAL = 10
"""Ticks a round of checks is spread over (one second each at the default 10 s)."""


def behind(ch: Channel, position: StreamPosition) -> bool:
    """Whether *position* holds a publication the stream of *ch* has not delivered."""
    if position.epoch == NO_EPOCH:
        return False  # nothing published (or the history was lost and nothing since)
    if ch.epoch is None:
        return True  # the stream was lost: whatever is published is not delivered
    if ch.epoch == NO_EPOCH:
        return position.offset > 0  # the channel's first epoch began after the subscribe
    return ch.epoch != position.epoch or ch.last < position.offset


def checkable(ch: Channel) -> bool:
    """Whether a check may judge *ch*: live, with a stream and someone to deliver to."""
    return ch.state is ChannelState.LIVE and ch.epoch is not None and not ch.is_empty()


class PositionChecker:
    """The position checks of one worker (see the module docstring).

    Construction does no I/O; :meth:`run` is the periodic task and :meth:`check_all` one
    full round now (tests and the dropped-message benchmark call it).
    """

    def __init__(self, *, hub: Hub, bus: Bus, metrics: Metrics, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self._hub = hub
        self._bus = bus
        self._metrics = metrics
        self._interval_s = interval_s
        self._ring: list[Channel] = []
        self._tick = 0
        """The tick of the round about to run, 0 to ``TICKS_PER_INTERVAL - 1``."""
        self._share = 1
        self._noted: dict[str, tuple[Channel, StreamPosition]] = {}
        """Channels found behind by their last check, with the position that check read."""

    @property
    def noted(self) -> int:
        """Channels found behind once, waiting for their next check."""
        return len(self._noted)

    async def run(self) -> None:
        """Tick every ``interval_s / TICKS_PER_INTERVAL`` until cancelled."""
        tick_s = self._interval_s / TICKS_PER_INTERVAL
        while True:
            await asyncio.sleep(tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("position check failed")

    async def tick(self) -> None:
        """Check the next share of the round's channels; every :data:`TICKS_PER_INTERVAL`
        ticks a new round takes the channels held then, so each is checked once a round."""
        if self._tick == 0:
            self._ring = self._hub.channels()
            self._share = max(1, math.ceil(len(self._ring) / TICKS_PER_INTERVAL))
            self._forget_gone()
        start = self._tick * self._share
        self._tick = (self._tick + 1) % TICKS_PER_INTERVAL
        await self._check(self._ring[start : start + self._share])

    async def check_all(self) -> None:
        """Check every channel held now, at once (one call per :data:`PIPELINE_READS`)."""
        self._forget_gone()
        await self._check(self._hub.channels())

    async def _check(self, channels: list[Channel]) -> None:
        if not self._bus.live:
            return
        due = [ch for ch in channels if self._hub.holds(ch) and checkable(ch)]
        for start in range(0, len(due), PIPELINE_READS):
            batch = due[start : start + PIPELINE_READS]
            try:
                positions = await self._bus.positions([ch.name for ch in batch])
            except BusUnavailable as exc:
                self._metrics.position_checks.labels(result="failed").inc()
                log.warning("position check of %d channels failed: %s", len(batch), exc)
                return
            self._metrics.position_checks.labels(result="ok").inc()
            self._metrics.position_channels_checked.inc(len(batch))
            for ch, position in zip(batch, positions, strict=True):
                self._judge(ch, position)

    def _judge(self, ch: Channel, position: StreamPosition) -> None:
        """Note a channel behind *position*; repair one still behind what was noted."""
        noted = self._noted.pop(ch.name, None)
        # The stream may have moved while the positions were read: judged as it is now.
        if not (self._hub.holds(ch) and checkable(ch) and behind(ch, position)):
            return
        if noted is None or noted[0] is not ch or not behind(ch, noted[1]):
            self._noted[ch.name] = (ch, position)
            return
        self._metrics.position_channels_behind.inc()
        log.warning(
            "channel %s is behind its position on the bus (%s, delivered %s:%d); repairing",
            ch.name,
            noted[1],
            ch.epoch,
            ch.last,
        )
        task = self._hub.repair(ch)
        if task is None:
            self._metrics.position_repairs.labels(result="failed").inc()
            return
        task.add_done_callback(lambda t: self._repaired(ch, position, t))

    def _repaired(self, ch: Channel, target: StreamPosition, task: asyncio.Task[None]) -> None:
        """Count the repair: "repaired" once the stream reached *target*, else "failed"."""
        if task.cancelled() or not self._hub.holds(ch):
            return  # the channel was let go meanwhile: nothing to count
        ok = ch.state is ChannelState.LIVE and ch.epoch is not None and not behind(ch, target)
        self._metrics.position_repairs.labels(result="repaired" if ok else "failed").inc()

    def _forget_gone(self) -> None:
        for name, (ch, _) in list(self._noted.items()):
            if not self._hub.holds(ch):
                del self._noted[name]
