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

A read asks the bus for a bounded number of publications, not the whole window (issue 12,
item 1: a recovery that had missed 10 MiB loaded all of it at its subscribe, and the worker's
heap kept the space). A subscribe reads at most :data:`FIRST_READ_PUBLICATIONS` after its
position (a reconnect after a blip misses a handful: its replay is whole in the one batched
read); a paced replay reads the rest in slices through this same reader, so the slices the
feeds of one turn ask for go to the bus in one pipeline too. Requests of a turn on one
channel and epoch share one read when their positions lie within one first read of each
other; one far ahead of the others gets a read of its own, so that no read spans much more
than a slice or a first read.
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
    """Without a position: always True. With one: the history holds every offset after it up
    to ``position``, and ``publications`` holds the first of them, without a gap (False:
    outside the window, or the epoch changed; ``publications`` is then empty)."""
    publications: list[Publication]

    @property
    def more(self) -> bool:
        """Whether ``publications`` stops short of ``position``: the rest is still in the
        history, read in slices (a read is bounded, see the module docstring)."""
        pubs = self.publications
        return bool(pubs) and pubs[-1].offset < self.position.offset


def suffix_after(
    position: StreamPosition, publications: list[Publication], since: StreamPosition | None
) -> Recovered:
    """What one reader positioned at *since* gets from a read of the channel's history.

    The read may stop short of *position* (it was bounded): the reader is complete when what
    it read starts right after *since*, without a gap, since a history is trimmed from its
    oldest end only and so holds everything from there to its top."""
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
        bool(tail)
        and tail[0].offset == since.offset + 1
        and tail[-1].offset == since.offset + len(tail)
        and tail[-1].offset <= position.offset
    )
    return Recovered(position, complete, tail if complete else [])


_Request = tuple[StreamPosition | None, int, "asyncio.Future[Recovered]"]
"""Where a reader is, how many publications after it it asks for, and its answer."""

FIRST_READ_PUBLICATIONS = 64
"""Most publications a subscribe's history read asks for. A reconnect after a blip or a
deploy misses a few: its whole replay comes in the one read its turn shares. A recovery that
missed more is replayed in paced slices (socketsrv/recovery.py). 64 publications of the
32 KiB used by bench/slow_clients.py are 2 MiB, where the whole window was 16 MiB."""

PIPELINE_READS = 256
"""Reads per bus call: a storm's thousands of channels go out as a few pipelines, none so
long that its first readers wait on the last one's reply."""


class HistoryReader:
    """Reads channel histories for one hub, batched per loop turn (see the module docstring)."""

    def __init__(self, bus: Bus, *, limit: int, decode: Decode) -> None:
        self._bus = bus
        self._limit = limit
        """The history's size: a read asking for more gets nothing more."""
        self._decode = decode
        self._pending: dict[str, list[_Request]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bus_live(self) -> bool:
        """Whether the bus is live (a failed read then means one shard, not an outage)."""
        return self._bus.live

    async def read(
        self, channel: str, since: StreamPosition | None, limit: int | None = None
    ) -> Recovered:
        """The channel's position and the publications after *since*, read after this call:
        at least the first *limit* of them (None: all the history holds), maybe more when
        the read is shared (:attr:`Recovered.more` tells whether the rest is still to read).

        Raises :class:`herald_contract.bus.BusUnavailable` when the bus cannot be reached.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Recovered] = loop.create_future()
        count = self._limit if limit is None else max(1, min(limit, self._limit))
        self._pending.setdefault(channel, []).append((since, count, future))
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
            for batch in _batches(requests, self._limit)
        ]
        for start in range(0, len(batches), PIPELINE_READS):
            task = asyncio.ensure_future(self._read(batches[start : start + PIPELINE_READS]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, batches: list[tuple[str, list[_Request]]]) -> None:
        """One bus call for the batches of a turn: one read per (channel, epoch asked)."""
        reads = [HistoryRead(channel, *_span(batch, self._limit)) for channel, batch in batches]
        futures = [future for _, batch in batches for _, _, future in batch]
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
            for since, _, future in batch:
                if not future.done():
                    future.set_result(suffix_after(result.position, publications, since))

    async def close(self) -> None:
        """Cancel the reads in flight (their readers see CancelledError)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _batches(requests: list[_Request], limit: int) -> list[list[_Request]]:
    """The reads a channel's requests of one turn need: one per epoch asked about, and within
    one epoch one per run of positions no further apart than a first read (a read from the
    lowest position of its run must reach each one's own count without spanning the whole
    history); requests without a position join the first read."""
    by_epoch: dict[str, list[_Request]] = {}
    without: list[_Request] = []
    for request in requests:
        since = request[0]
        if since is None:
            without.append(request)
        else:
            by_epoch.setdefault(since.epoch, []).append(request)
    batches: list[list[_Request]] = []
    reach = min(limit, FIRST_READ_PUBLICATIONS)
    for same_epoch in by_epoch.values():
        same_epoch.sort(key=lambda r: r[0].offset if r[0] is not None else 0)
        run: list[_Request] = []
        lowest = 0
        for request in same_epoch:
            offset = request[0].offset if request[0] is not None else 0
            if run and offset - lowest >= reach:
                batches.append(run)
                run = []
            if not run:
                lowest = offset
            run.append(request)
        batches.append(run)
    if not batches:
        return [without]
    batches[0].extend(without)
    return batches


def _span(batch: list[_Request], limit: int) -> tuple[StreamPosition | None, int]:
    """Where one read of *batch* starts, and how many publications it asks for."""
    positions = [(since, count) for since, count, _ in batch if since is not None]
    if not positions:
        return None, limit
    lowest = min((since for since, _ in positions), key=lambda p: p.offset)
    count = max(since.offset - lowest.offset + count for since, count in positions)
    return lowest, min(count, limit)
