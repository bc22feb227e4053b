"""The prober's view of the dropped-message experiment (:mod:`bench.dropped`, issue 12).

The end-to-end prober (``python -m launch.prober``, docs/configuration.md#prober) runs as its
own process beside the fleet under test: it publishes its probes straight to the experiment's
redis-server, as the bench's publisher does, and holds *connections* websockets on the fleet,
so each probe reaches the workers through the dropping proxy like every other publication.

* :class:`ProbeDropper` is the proxy's filter: a random share of every pub/sub message, and
  optionally a run of consecutive probes chosen on purpose (a loss the prober must see late,
  whatever chance does: the smoke test's assertion).
* :class:`ProberProcess` starts the prober, scrapes its ``/metrics`` and stops it.
* :func:`sample` reads the prober, the fleet's repair counters and the proxy at one instant:
  one point of the time series in bench/results/dropped.json.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families

from herald_contract.envelope import InvalidEnvelope, decode_envelope
from herald_contract.keys import KeyLayout
from launch.probe_ledger import parse_probe
from tests.support.processes import stop_group
from tests.support.redis_server import free_port

PROBE_CHANNEL = "probe:dropped"
LIVE_CHANNEL = KeyLayout().live(PROBE_CHANNEL).encode()
"""The Redis pub/sub channel the workers hear the probes on."""
LATE_THRESHOLDS_S = (0.25, 1.0)
"""Receipts later than these are counted in each sample (1.0: the SLO's threshold)."""


@dataclass(slots=True)
class ProbeDropper:
    """Which pub/sub messages the proxy drops, once :meth:`start` is called (before, none:
    it only notes the newest probe): each with probability *share*; and, once
    :meth:`drop_run` is called, the *run* consecutive probes starting two after the newest
    probe seen. Every dropped probe is noted (seq, seconds since :meth:`start`)."""

    share: float
    rng: random.Random
    dropped_probes: list[tuple[int, float]] = field(default_factory=list)
    chosen: range = range(0)
    _newest_probe: int = 0
    _began: float | None = None

    def start(self) -> None:
        self._began = time.monotonic()

    def drop_run(self, run: int) -> None:
        first = self._newest_probe + 2
        self.chosen = range(first, first + run)

    def __call__(self, channel: bytes, payload: bytes) -> bool:
        seq = probe_seq(channel, payload)
        if seq is not None:
            self._newest_probe = max(self._newest_probe, seq)
        if self._began is None:
            return False
        drop = seq in self.chosen or self.rng.random() < self.share
        if drop and seq is not None:
            self.dropped_probes.append((seq, round(time.monotonic() - self._began, 2)))
        return drop


def probe_seq(channel: bytes, payload: bytes) -> int | None:
    """The probe number a pub/sub message carries; None when it is not a probe."""
    if channel != LIVE_CHANNEL:
        return None
    try:
        probe = parse_probe(decode_envelope(payload).data)
    except InvalidEnvelope:
        return None
    return None if probe is None else probe.seq


class ProberProcess:
    """``python -m launch.prober`` on *fleet_url*, publishing to *redis_url*."""

    def __init__(
        self,
        *,
        redis_url: str,
        fleet_url: str,
        interval_s: float,
        deadline_s: float,
        connections: int,
        log: Path,
    ) -> None:
        self.metrics_port = free_port()
        self.connections = connections
        environment = {
            **os.environ,
            "HERALD_REDIS_URL": redis_url,
            "HERALD_PROBE_URL": fleet_url,
            "HERALD_PROBE_CHANNEL": PROBE_CHANNEL,
            "HERALD_PROBE_INTERVAL_S": str(interval_s),
            "HERALD_PROBE_DEADLINE_S": str(deadline_s),
            "HERALD_PROBE_CONNECTIONS": str(connections),
            "HERALD_PROBE_METRICS_PORT": str(self.metrics_port),
            "HERALD_LOG_LEVEL": "WARNING",
        }
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "launch.prober"],
            cwd=Path(__file__).resolve().parents[1], env=environment,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def scrape(self) -> dict[str, float]:
        """Its metrics: ``name{labels}`` -> value (histogram buckets under ``..._bucket{le}``)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5.0) as response:
            text = response.read().decode()
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return found

    def wait_live(self, timeout_s: float) -> bool:
        """Until every connection is live (True), the process ends or *timeout_s* passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                live = self.scrape().get('herald_probe_connections{state="live"}', 0.0)
            except OSError:
                live = 0.0
            if live >= self.connections:
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        stop_group(self.process)
        self._log.close()


async def workers_hearing_probes(redis_url: str) -> int:
    """How many Redis connections (one per worker holding a probe subscriber) subscribe to
    the probe channel: both workers are covered when it equals the fleet's size."""
    client = redis.Redis.from_url(redis_url)
    try:
        counts = await client.pubsub_numsub(LIVE_CHANNEL)
    finally:
        await client.aclose()
    return int(counts[0][1])


def probe_summary(metrics: dict[str, float]) -> dict[str, Any]:
    """What one scrape of the prober says: probes sent, receipts, misses, late receipts and
    the cumulative latency buckets."""
    buckets = {
        key.split('le="', 1)[1].rstrip('"}'): value
        for key, value in metrics.items()
        if key.startswith("herald_probe_latency_seconds_bucket")
    }
    receipts = metrics.get("herald_probe_latency_seconds_count", 0.0)
    summary: dict[str, Any] = {
        "sent": metrics.get("herald_probe_sent_total", 0.0),
        "receipts": receipts,
        "missed_deadline": metrics.get('herald_probe_missed_total{reason="deadline"}', 0.0),
        "missed_publish_failed": metrics.get(
            'herald_probe_missed_total{reason="publish_failed"}', 0.0
        ),
        "live_connections": metrics.get('herald_probe_connections{state="live"}', 0.0),
    }
    for threshold in LATE_THRESHOLDS_S:
        within = next((n for le, n in buckets.items() if float(le) == threshold), 0.0)
        summary[f"over_{threshold:g}_s"] = receipts - within
    summary["buckets"] = buckets
    return summary


def sample(
    at_s: float,
    prober: ProberProcess,
    fleet_counters: Callable[[], dict[str, float]],
    dropped: int,
    dropper: ProbeDropper,
) -> dict[str, Any]:
    """One point of the time series (blocking: run it in a thread)."""
    try:
        probe: dict[str, Any] = probe_summary(prober.scrape())
    except OSError as exc:
        probe = {"error": str(exc)}
    return {
        "t_s": round(at_s, 2),
        "probe": probe,
        "fleet": fleet_counters(),
        "proxy_dropped": dropped,
        "proxy_dropped_probes": len(dropper.dropped_probes),
    }
