"""The C heap of a worker: giving freed memory back to the system (issue 12, item 1).

Publications, frames and transport buffers of more than 512 bytes are allocated by glibc's
``malloc``, not by Python's own allocator, and below glibc's mmap threshold (128 KiB, raised
by glibc itself up to 32 MiB each time a bigger mapped chunk is freed) they come from the
heap. glibc keeps what is freed there: after a burst (paced replays, a slow moment in which
hundreds of connections' outgoing buffers filled, a reconnect storm) a worker's RSS stayed
up although its live memory was back where it was. Measured with bench/heap_probe.py
(bench/results/SLOW.md): the heap's bytes in use returned to their baseline while glibc held
7-55 MB of it free and resident.

Two remedies, both at worker start (socketsrv/fleet.py):

* :func:`map_big_allocations`: an allocation of :data:`MMAP_THRESHOLD_BYTES` or more that
  the heap's free lists cannot serve gets a mapping of its own, unmapped as soon as it is
  freed, and glibc no longer raises that threshold. A burst of replayed 32 KiB publications
  then left the heap as it was (10 MB before and after, against 22-28 MB without it). The
  cost is a mapping and its page faults per such allocation: building a 32 KiB frame took
  71 us instead of 55 us; smaller objects (the Q&A site's publications) are not affected.
* :class:`HeapTrim`: ``malloc_trim(0)`` returns every free page wherever it lies in the
  heap, at most once per interval. Paced replays request a trim when they start and end
  (socketsrv/recovery.py); the worker also requests one every :data:`SWEEP_EVERY_S`, for
  what the heap still takes (small objects of a reconnect storm, buffers the free lists
  served). A trim with nothing to return costs well under a millisecond on a worker's heap;
  one that returns tens of MB, a few milliseconds.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable

MMAP_THRESHOLD_BYTES = 16 * 1024
"""Allocations this big and bigger are mapped on their own when the free lists cannot serve
them (glibc's ``M_MMAP_THRESHOLD``; its default is 128 KiB and moves)."""

_M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter number (glibc's malloc.h)."""

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


def map_big_allocations(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap threshold to *nbytes* for this process (see the module docstring);
    whether it was set (False where the C library is not glibc)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, nbytes))


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
