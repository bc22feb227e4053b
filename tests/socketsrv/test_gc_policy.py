"""socketsrv/gc_policy.py: the survivors of a full collection are frozen, and let go once
the frozen objects have grown past the bound."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from socketsrv.gc_policy import FreezeAfterFullCollections


class Cycle:
    def __init__(self) -> None:
        self.me = self


@contextmanager
def installed(policy: FreezeAfterFullCollections) -> Iterator[FreezeAfterFullCollections]:
    """*policy* installed, with only the test's own collections running (automatic ones off)."""
    enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.unfreeze()
    gc.callbacks.append(policy)
    try:
        yield policy
    finally:
        gc.callbacks.remove(policy)
        gc.unfreeze()
        gc.collect()
        if enabled:
            gc.enable()


@pytest.fixture
def policy() -> Iterator[FreezeAfterFullCollections]:
    with installed(FreezeAfterFullCollections(thaw_growth=2.0)) as policy:
        yield policy


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


def test_the_frozen_objects_are_counted_at_most_once_per_interval() -> None:
    now = [100.0]
    counting = FreezeAfterFullCollections(
        thaw_growth=2.0, check_interval_s=5.0, clock=lambda: now[0]
    )
    with installed(counting) as policy:
        gc.collect()  # the baseline
        baseline = gc.get_freeze_count()
        gc.collect()  # counted: nothing grew
        grown = [Cycle() for _ in range(2 * baseline + 1000)]
        gc.collect()  # past the bound, but within the interval of the last count
        assert policy.thaws == 0
        assert gc.get_freeze_count() > 2 * baseline
        now[0] += 5.0
        gc.collect()
        assert policy.thaws == 1
        del grown
