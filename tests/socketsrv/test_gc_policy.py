"""socketsrv/gc_policy.py: the survivors of a full collection are frozen, and let go once
the frozen objects have grown past the bound."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from socketsrv.gc_policy import FreezeAfterFullCollections


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def policy() -> Iterator[FreezeAfterFullCollections]:
    """The policy, with only the test's own collections running (automatic ones off)."""
    enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.unfreeze()
    installed = FreezeAfterFullCollections(thaw_growth=2.0)
    gc.callbacks.append(installed)
    try:
        yield installed
    finally:
        gc.callbacks.remove(installed)
        gc.unfreeze()
        gc.collect()
        if enabled:
            gc.enable()


def test_the_survivors_of_a_full_collection_are_frozen(policy: FreezeAfterFullCollections) -> None:
    kept = [Cycle() for _ in range(1000)]
    gc.collect()
    assert gc.get_freeze_count() >= len(kept)
    assert all(gc.is_tracked(c) for c in kept)
    assert policy.thaws == 0


def test_younger_collections_freeze_nothing(policy: FreezeAfterFullCollections) -> None:
    gc.collect(0)
    gc.collect(1)
    assert gc.get_freeze_count() == 0


def test_frozen_objects_grown_past_the_bound_are_let_go_and_their_dead_cycles_freed(
    policy: FreezeAfterFullCollections,
) -> None:
    gc.collect()  # the baseline: what survives a full walk
    baseline = gc.get_freeze_count()
    dead = [Cycle() for _ in range(2 * baseline + 1000)]
    gc.collect()  # they survive (still referenced): frozen, and past twice the baseline
    assert policy.thaws == 1
    assert gc.get_freeze_count() == 0  # let go: the next full collection walks everything
    del dead  # cycles: only a collection frees them
    freed = gc.collect()
    assert freed >= 2 * baseline
    assert gc.get_freeze_count() < 2 * baseline  # the survivors, frozen again
