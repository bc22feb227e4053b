"""socketsrv/metrics.py: HistogramBatch exports what observing each value would have, a
flush later."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from socketsrv.metrics import HistogramBatch

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.99, 1.0, 1.5, 30.0, 0.002]


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("herald_test_seconds", "A test histogram.", buckets=BUCKETS, registry=registry)


def exported(registry: CollectorRegistry) -> bytes:
    """The exposition without the ``_created`` sample (when the histogram was made)."""
    lines = generate_latest(registry).splitlines(keepends=True)
    return b"".join(line for line in lines if b"_created" not in line)


def test_a_flushed_batch_exports_the_same_series_as_observing_each_value() -> None:
    observed, batched = CollectorRegistry(), CollectorRegistry()
    direct = histogram(observed)
    batch = HistogramBatch(histogram(batched))
    for value in VALUES:
        direct.observe(value)
        batch.observe(value)
    batch.flush()
    assert exported(batched) == exported(observed)


def test_nothing_is_exported_before_the_flush_and_nothing_twice_after() -> None:
    registry = CollectorRegistry()
    batch = HistogramBatch(histogram(registry))
    empty = exported(registry)
    batch.observe(0.5)
    assert exported(registry) == empty
    batch.flush()
    once = exported(registry)
    assert b'herald_test_seconds_bucket{le="1.0"} 1.0' in once
    batch.flush()
    assert exported(registry) == once
    batch.observe(0.5)
    batch.flush()
    assert b'herald_test_seconds_bucket{le="1.0"} 2.0' in exported(registry)
    assert b"herald_test_seconds_sum 1.0" in exported(registry)
