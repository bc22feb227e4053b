"""The publish API's metrics, in a registry of its own (one per app).

Label sets are bounded: *endpoint* is one of the API's operations or ``other``, *key* one of
the configured key names, *reason* one of the error reasons of :mod:`publish_api.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

ENDPOINTS = ("publish", "broadcast", "batch", "other")


@dataclass(frozen=True, slots=True)
class ApiMetrics:
    registry: CollectorRegistry
    requests: Counter
    """herald_api_requests_total{endpoint, status}: every answered request."""
    refused: Counter
    """herald_api_refused_total{reason}: requests answered with an error (4xx, 5xx)."""
    publications: Counter
    """herald_api_publications_total{key, result}: published, duplicate or failed."""
    seconds: Histogram
    """herald_api_request_seconds{endpoint}: time to answer."""

    def render(self) -> bytes:
        return generate_latest(self.registry)


def build_metrics(registry: CollectorRegistry | None = None) -> ApiMetrics:
    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    return ApiMetrics(
        registry=registry,
        requests=Counter(
            "herald_api_requests",
            "Publish API requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=registry,
        ),
        refused=Counter(
            "herald_api_refused",
            "Publish API requests answered with an error, by reason (docs/publish-api.md)",
            ["reason"],
            registry=registry,
        ),
        publications=Counter(
            "herald_api_publications",
            "Publications through the publish API, by API key name and result",
            ["key", "result"],
            registry=registry,
        ),
        seconds=Histogram(
            "herald_api_request_seconds",
            "Time to answer a publish API request, by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        ),
    )
