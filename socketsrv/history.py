"""History reads for subscribes and repairs, one bus call per channel per loop turn.

After a deploy or a network blip, thousands of clients resubscribe to the same channels with
nearly the same positions within milliseconds. Each needs the publications after its own
position, read *after* it registered for live publications (that order is what makes the
subscribe gap-free, see socketsrv/recovery.py). Requests made during one event-loop turn are all
registered before the turn ends, so one read issued at the end of the turn, from the lowest
position of the batch, serves every one of them: each takes the suffix after its own
position and checks on its own that the suffix has no gap. The reads of every channel of the
turn go to the bus together (:meth:`Bus.history_many`, one Redis pipeline), since after a
restart most clients also resubscribe to a channel of their own (``user:<id>``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from herald_contract.bus import Bus, HistoryRead
from herald_contract.envelope import StreamPosition
from herald_contract.history import reading_from
from socketsrv.publication import Publication

log = logging.getLogger(__name__)

Decode = Callable[[str, list[bytes]], list[Publication]]


@dataclass(frozen=True, slots=True)
class Recovered:
    position: StreamPosition
    """The channel's epoch and last offset when the history was read."""
    complete: bool
    """Without a position: always True. With one: ``publications`` holds every offset after
    it up to ``position`` (False: outside the window, or the epoch changed)."""
    publications: list[Publication]


def suffix_after(
    position: StreamPosition, publications: list[Publication], since: StreamPosition | None
) -> Recovered:
    """What one reader positioned at *since* gets from a read of the channel's history."""
    if since is None:
        return Recovered(position, True, [])
    since = reading_from(since, position)  # a reader that saw nothing reads from offset 0
    if since.epoch != position.epoch or since.offset > position.offset:
        return Recovered(position, False, [])
    missed = position.offset - since.offset
    if missed == 0:
        return Recovered(position, True, [])
    tail = [p for p in publications if p.offset > since.offset]
    complete = (
        len(tail) == missed
        and tail[0].offset == since.offset + 1
        and tail[-1].offset == position.offset
    )
    return Recovered(position, complete, tail if complete else [])


_Request = tuple[StreamPosition | None, "asyncio.Future[Recovered]"]

PIPELINE_READS = 256
"""Reads per bus call: a storm's thousands of channels go out as a few pipelines, none so
long that its first readers wait on the last one's reply."""


class HistoryReader:
    """Reads channel histories for one hub, batched per loop turn (see the module docstring)."""

    def __init__(self, bus: Bus, *, limit: int, decode: Decode) -> None:
        self._bus = bus
        self._limit = limit
        self._decode = decode
        self._pending: dict[str, list[_Request]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bus_live(self) -> bool:
        """Whether the bus is live (a failed read then means one shard, not an outage)."""
        return self._bus.live

    async def read(self, channel: str, since: StreamPosition | None) -> Recovered:
        """The channel's position and the publications after *since*, read after this call.

        Raises :class:`herald_contract.bus.BusUnavailable` when the bus cannot be reached.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Recovered] = loop.create_future()
        self._pending.setdefault(channel, []).append((since, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._issue)
        return await future

    def _issue(self) -> None:
        pending, self._pending = self._pending, {}
        self._scheduled = False
        batches = [
            (channel, batch)
            for channel, requests in pending.items()
            for batch in _batches(requests)
        ]
        for start in range(0, len(batches), PIPELINE_READS):
            task = asyncio.ensure_future(self._read(batches[start : start + PIPELINE_READS]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, batches: list[tuple[str, list[_Request]]]) -> None:
        """One bus call for the batches of a turn: one read per (channel, epoch asked)."""
        reads = []
        for channel, batch in batches:
            positions = [since for since, _ in batch if since is not None]
            lowest = min(positions, key=lambda p: p.offset) if positions else None
            reads.append(HistoryRead(channel, lowest, self._limit))
        futures = [future for _, batch in batches for _, future in batch]
        try:
            results = await self._bus.history_many(reads)
            pairs = zip(reads, results, strict=True)
            decoded = [self._decode(read.channel, res.publications) for read, res in pairs]
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each waiting reader re-raises it
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, batch), result, publications in zip(batches, results, decoded, strict=True):
            for since, future in batch:
                if not future.done():
                    future.set_result(suffix_after(result.position, publications, since))

    async def read_slice(self, channel: str, since: StreamPosition, count: int) -> Recovered:
        """Up to *count* publications right after *since*, for a paced replay (one bus call,
        not batched: a slice is read when one connection has drained, not in a storm).

        ``complete`` is True when the slice starts at ``since.offset + 1`` in *since*'s epoch
        (False: the history was trimmed past it, or the epoch changed; nothing to read is
        False too, since a paced replay only reads below the channel's stream). Raises
        :class:`herald_contract.bus.BusUnavailable` when the bus cannot be reached.
        """
        result = await self._bus.history(channel, since, count)
        publications = self._decode(channel, result.publications)
        complete = (
            result.position.epoch == since.epoch
            and bool(publications)
            and publications[0].offset == since.offset + 1
        )
        return Recovered(result.position, complete, publications if complete else [])

    async def close(self) -> None:
        """Cancel the reads in flight (their readers see CancelledError)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _batches(requests: list[_Request]) -> list[list[_Request]]:
    """One batch per epoch asked about; requests without a position join the first batch."""
    by_epoch: dict[str, list[_Request]] = {}
    without: list[_Request] = []
    for request in requests:
        since = request[0]
        if since is None:
            without.append(request)
        else:
            by_epoch.setdefault(since.epoch, []).append(request)
    batches = list(by_epoch.values())
    if not batches:
        return [without]
    batches[0].extend(without)
    return batches
