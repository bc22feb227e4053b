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
"""

from __future__ import annotations

import gc
from typing import Any

THAW_GROWTH = 2.0
"""Frozen objects, as a multiple of the survivors of the last full walk, that let them go."""


class FreezeAfterFullCollections:
    """The ``gc.callbacks`` entry that applies the policy (install it with :func:`install`)."""

    def __init__(self, thaw_growth: float = THAW_GROWTH) -> None:
        self._thaw_growth = thaw_growth
        self._walked: int | None = None
        """Objects frozen after the last full walk (None: none yet)."""
        self.thaws = 0
        """How many times the frozen objects were let go."""

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        walked = self._walked is None or gc.get_freeze_count() == 0
        gc.freeze()
        frozen = gc.get_freeze_count()
        if walked:
            self._walked = frozen
        elif self._walked is not None and frozen > self._thaw_growth * max(self._walked, 1):
            gc.unfreeze()  # the next full collection walks everything once
            self._walked = None
            self.thaws += 1


def install() -> FreezeAfterFullCollections:
    """Apply the policy in this process from now on."""
    policy = FreezeAfterFullCollections()
    gc.callbacks.append(policy)
    return policy
