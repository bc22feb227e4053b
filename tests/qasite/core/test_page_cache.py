"""The page cache's L1 (bounded LRU with a time-to-live) and its L2 value format."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from qasite.core.metrics import build_metrics
from qasite.core.page_cache import LocalPages, PageCache, decode_l2, encode_l2


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def local(max_entries: int = 10, max_bytes: int = 1000, ttl_s: float = 60.0) -> LocalPages:
    return LocalPages(max_entries=max_entries, max_bytes=max_bytes, ttl_s=ttl_s)


def test_the_least_recently_used_page_leaves_first_past_the_entry_bound() -> None:
    pages = local(max_entries=2)
    pages.put(1, (1,), b"one")
    pages.put(2, (1,), b"two")
    assert pages.get(1) == ((1,), b"one")  # 1 is now the most recently used
    pages.put(3, (1,), b"three")
    assert pages.get(2) is None
    assert pages.get(1) is not None and pages.get(3) is not None
    assert len(pages) == 2


def test_the_byte_bound_holds_and_a_page_larger_than_it_is_not_kept() -> None:
    pages = local(max_bytes=10)
    pages.put(1, (1,), b"12345")
    pages.put(2, (1,), b"12345")
    pages.put(3, (1,), b"123")
    assert pages.bytes <= 10 and pages.get(1) is None
    pages.put(4, (1,), b"x" * 11)
    assert pages.get(4) is None and pages.bytes <= 10
    pages.put(2, (2,), b"1")  # replacing an entry counts its bytes once
    assert pages.bytes == len(b"123") + 1


def test_an_entry_expires_after_its_time_to_live() -> None:
    clock = FakeClock()
    pages = LocalPages(max_entries=10, max_bytes=100, ttl_s=5.0, clock=clock)
    pages.put(1, (1,), b"page")
    clock.now = 4.9
    assert pages.get(1) is not None
    clock.now = 5.0
    assert pages.get(1) is None and pages.bytes == 0


def test_an_l2_value_round_trips_and_foreign_bytes_are_refused() -> None:
    value = encode_l2((3, 0, 7), b'{"id": 1}')
    assert decode_l2(value) == ((3, 0, 7), b'{"id": 1}')
    for bad in (b"", b"hp1", b"hp2 1\n{}", b"hp1 1,a\n{}", b"hp1 1\n[1]", b"hp1 1\n\xff{"):
        with pytest.raises((ValueError, UnicodeDecodeError)):
            decode_l2(bad)


async def test_a_page_is_served_only_at_the_stamp_it_was_built_at() -> None:
    metrics = build_metrics(CollectorRegistry())
    cache = PageCache(local(), metrics.page_cache)
    await cache.put(7, (1, 2), b"{}")
    assert await cache.get(7, (1, 2)) == b"{}"
    assert await cache.get(7, (1, 3)) is None
    assert await cache.get(8, (1, 2)) is None

    def count(result: str) -> float:
        value = metrics.registry.get_sample_value(
            "herald_qa_page_cache_total", {"level": "l1", "result": result}
        )
        return float(value or 0)

    assert (count("hit"), count("stale"), count("miss")) == (1, 1, 1)
