"""socketsrv/heap.py: the heap trim is rate-limited, and the worker's periodic sweep requests
one every period until it is cancelled (no real malloc_trim: a counting stand-in)."""

from __future__ import annotations

from socketsrv.heap import HeapTrim
from tests.support.waiting import eventually


class CountingTrim:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pad: int) -> int:
        self.calls += 1
        return 1


async def test_the_sweep_requests_a_trim_every_period_until_cancelled() -> None:
    trim = CountingTrim()
    heap = HeapTrim(min_interval_s=0.01, trim=trim)
    heap.every(0.02)
    heap.every(0.02)  # a second call does not start a second sweep
    await eventually(lambda: trim.calls >= 3)
    heap.cancel()
    assert heap._sweep is None
    assert heap._later is None


async def test_without_malloc_trim_nothing_is_scheduled() -> None:
    heap = HeapTrim(trim=None)
    heap._trim = None  # as on musl or macOS
    heap.every(0.01)
    heap.request()
    assert heap._sweep is None
    assert heap.trims == 0
