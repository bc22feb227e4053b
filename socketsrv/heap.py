"""The C heap of a worker: giving freed memory back to the system (issue 12, item 1).

Publications, frames and transport buffers of more than 512 bytes are allocated by glibc's
``malloc``, not by Python's own allocator, and below glibc's mmap threshold (128 KiB, raised
by glibc itself up to 32 MiB each time a bigger mapped chunk is freed) they come from the
heap. glibc keeps what is freed there: after a burst (paced replays, a slow moment in which
hundreds of connections' outgoing buffers filled, a reconnect storm) a worker's RSS stayed
up although its live memory was back where it was. Measured with bench/heap_probe.py
(bench/results/SLOW.md): the heap's bytes in use returned to their baseline while glibc held
7-55 MB of it free and resident.

What stays is free heap, not live objects. :class:`HeapTrim` gives it back:
``malloc_trim(0)`` returns every free page wherever it lies in the heap, at most once per
interval. Paced replays request a trim when they start and end (socketsrv/recovery.py); the
worker also requests one every :data:`SWEEP_EVERY_S` (socketsrv/fleet.py), for bursts that
are not replays. A trim with nothing to return costs well under a millisecond on a worker's
heap; one that returns tens of MB, a few milliseconds.

Not done, measured: fixing glibc's mmap threshold at 16 KiB (``mallopt``), so that 32 KiB
objects get mappings of their own, unmapped when freed. The heap then stayed at 10 MB
through the replays, but the worker spent 24.6 s of CPU instead of 5.4 s in the same
slow-client run with two slow links (a mapping, its page faults and an unmapping for every
such buffer; which buffers are made so often was not examined), and its replays fell
behind. Nothing showed glibc raising that threshold either: sampled every second, the
mapped chunks stayed at about 1 MB, the interpreter's own.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable

MIN_INTERVAL_S = 10.0
"""Least time between two trims."""

SWEEP_EVERY_S = 30.0
"""A worker asks for a trim this often whatever happened (:meth:`HeapTrim.every`)."""


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrim:
    """Gives the heap's free pages back to the system, at most once per *min_interval_s*.

    :meth:`request` trims at once when the last trim is that old, else once when it is.
    Paced replays request a trim when they start (the subscribe's first read has been freed
    by then) and when they end, so the heap is trimmed within an interval of the last of
    them whether or not other replays still run. Before, a trim waited until no paced
    replay ran at all, and one client on a slow link, whose replay runs for minutes, kept
    everyone else's freed replays in the worker's RSS (bench/results/SLOW.md).
    Does nothing where the C library has no ``malloc_trim``.
    """

    def __init__(
        self,
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        trim: Callable[[int], int] | None = None,
    ) -> None:
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._trim = trim if trim is not None else _libc_malloc_trim()
        self._last = -math.inf
        self._later: asyncio.TimerHandle | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self.trims = 0
        """How many times the heap was trimmed (tests)."""

    def request(self) -> None:
        """Trim now if the last trim is *min_interval_s* old, else once when it is."""
        if self._trim is None or self._later is not None:
            return
        wait_s = self._last + self._min_interval_s - self._clock()
        if wait_s <= 0:
            self._run()
            return
        self._later = asyncio.get_running_loop().call_later(wait_s, self._run_later)

    def every(self, period_s: float = SWEEP_EVERY_S) -> None:
        """From now on, also :meth:`request` a trim every *period_s* (until :meth:`cancel`)."""
        if self._trim is None or self._sweep is not None:
            return
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self._sweep = loop.call_later(period_s, tick)
            self.request()

        self._sweep = loop.call_later(period_s, tick)

    def _run_later(self) -> None:
        self._later = None
        self._run()

    def _run(self) -> None:
        assert self._trim is not None
        self._last = self._clock()
        self._trim(0)
        self.trims += 1

    def cancel(self) -> None:
        """Stop: no trim put off or periodic one runs after this."""
        for handle in (self._later, self._sweep):
            if handle is not None:
                handle.cancel()
        self._later = self._sweep = None
