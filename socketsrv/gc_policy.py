"""Full garbage collections without the long pause: the survivors of each one are frozen.

A worker holding 9,500 connections tracks about 400,000 objects, and CPython 3.11's full
(generation 2) collection walks every one of them: 120-280 ms during which nothing is
delivered, found nothing to free, and came about once per worker in every 26-second step of
the Q&A mix at 19,000 connections. Those pauses were Herald's p99 (120-190 ms against the
floor's 20-24 ms; with full collections held off for the run, 28-29 ms:
bench/results/INTERLEAVED.md).

So after every full collection the objects that survived it are moved to the permanent
generation (``gc.freeze``): the next full collections walk only what was allocated since.
Acyclic garbage among frozen objects is still freed at once by reference counting; cyclic
garbage (a closed connection's parser generator and its protocol, for one) waits while its
objects are frozen. To bound that, when the frozen objects have grown to
:data:`THAW_GROWTH` times what they were after the last full walk, they are let go
(``gc.unfreeze``): the next full collection walks everything once, frees what died, and its
survivors are frozen again. Memory held by dead cycles is thus at most about what the live
objects hold, and a full walk comes only when the heap has grown that much.

Counting the frozen objects (``gc.get_freeze_count``) walks all of them, and with the heap
frozen full collections come often (each finds little left to walk), so the growth is
checked at most once per :data:`CHECK_INTERVAL_S`, not after every one: the bound may be
overrun by what one interval freezes. (py-spy put 10 % of a worker's samples in the counting
during a reconnect of 12,000 clients; an A/B of the reconnect showed no difference beyond
its noise, bench/results/FAST_OPEN.md.)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

THAW_GROWTH = 2.0
"""Frozen objects, as a multiple of the survivors of the last full walk, that let them go."""
CHECK_INTERVAL_S = 5.0
"""The frozen objects are counted (a walk of them all) at most this often."""


class FreezeAfterFullCollections:
    """The ``gc.callbacks`` entry that applies the policy (install it with :func:`install`)."""

    def __init__(
        self,
        thaw_growth: float = THAW_GROWTH,
        check_interval_s: float = CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._thaw_growth = thaw_growth
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._next_check = 0.0
        self._walked: int | None = None
        """Objects frozen after the last full walk (None: that walk is the next one)."""
        self.thaws = 0
        """How many times the frozen objects were let go."""

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        gc.freeze()
        if self._walked is None:  # this collection walked everything: the new baseline
            self._walked = gc.get_freeze_count()
            return
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._check_interval_s
        if gc.get_freeze_count() > self._thaw_growth * max(self._walked, 1):
            gc.unfreeze()  # the next full collection walks everything once
            self._walked = None
            self.thaws += 1


def install() -> FreezeAfterFullCollections:
    """Apply the policy in this process from now on."""
    policy = FreezeAfterFullCollections()
    gc.callbacks.append(policy)
    return policy
