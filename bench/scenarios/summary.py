"""Summaries the scenarios put into the results: latency percentiles, a latency CDF, and the
connection trouble the load processes saw (what the smoke test checks is zero)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from bench.loadgen.results import Stats


class Latency(TypedDict):
    samples: int
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None


class ConnectionSummary(TypedDict):
    lost_unexpectedly: int
    closes_by_code: dict[str, int]
    connect_failures: dict[str, int]
    handshake_failures: dict[str, int]
    adapter_errors: int
    adapter_error_codes: dict[str, int]


def percentiles(samples: Sequence[float]) -> Latency:
    """p50, p99, p99.9 and the maximum of *samples* (ms), rounded; None without samples."""
    if not samples:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    import numpy as np

    a = np.asarray(samples)
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {
        "samples": len(samples),
        "p50_ms": round(float(p50), 2),
        "p99_ms": round(float(p99), 2),
        "p999_ms": round(float(p999), 2),
        "max_ms": round(float(a.max()), 2),
    }


def cdf(samples: Sequence[float], points: int = 200) -> list[list[float]]:
    """A compact CDF: (latency ms, fraction) at *points* quantiles (for the plot)."""
    if not samples:
        return []
    import numpy as np

    qs = np.linspace(0, 1, points + 1)
    values = np.quantile(np.asarray(samples), qs)
    return [[round(float(v), 3), round(float(q), 4)] for v, q in zip(values, qs, strict=True)]


def connection_summary(stats: Stats) -> ConnectionSummary:
    """The connection trouble in *stats*: all zero and empty when nothing went wrong."""
    return {
        "lost_unexpectedly": stats["lost_unexpectedly"],
        "closes_by_code": stats["closes"],
        "connect_failures": stats["connect_failures"],
        "handshake_failures": stats["handshake_failures"],
        "adapter_errors": stats["adapter_errors"],
        "adapter_error_codes": stats["adapter_error_codes"],
    }
