"""Every metric socketsrv exports, defined in one place (monitoring/README.md lists them).

Built once per process by :func:`build_metrics` and passed down. With several workers the
fleet runs prometheus-client in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set by the
supervisor before workers start), so whichever worker answers ``/metrics`` reports the sum
over the fleet; gauges say how they combine across processes.

Labels take values from bounded sets only. The ``namespace`` label is a kind of the
installation's namespace file (herald_contract/namespaces.toml or ``HERALD_NAMESPACES_FILE``),
fixed at start: :func:`namespace_series` makes one series per kind up front, and a channel
reaches the hub only once its name parsed against that file (issue 14, item 5).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_RECOVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class Metrics:
    connections_open: Gauge
    worker_connections: Gauge
    connections_accepted: Counter
    fast_opens: Counter
    handshakes_queued: Gauge
    handshakes_abandoned: Counter
    handshake_rejections: Counter
    metrics_refused: Counter
    disconnects: Counter
    subscriptions_open: Gauge
    channels_subscribed: Gauge
    commands: Counter
    errors: Counter
    publications_received: Counter
    frames_delivered: Counter
    namespace_publications: Counter
    namespace_deliveries: Counter
    namespace_subscriptions: Gauge
    bytes_written: Counter
    fanout_duration: Histogram
    delivery_latency: Histogram
    recoveries: Counter
    subscribe_reads: Counter
    gap_repairs: Counter
    bus_live: Gauge
    bus_reconnects: Counter
    bus_invalid_messages: Counter
    bus_shard_connections: Gauge
    bus_recoveries: Counter
    bus_channels_resubscribed: Counter
    bus_slot_moves: Counter
    bus_recovery_duration: Histogram
    frames_refused: Counter
    replay_bytes: Counter
    replays_refused: Counter
    paced_replays: Counter
    conflated: Counter
    heartbeats_delayed: Counter
    subscriptions_refused: Counter
    accept_errors: Counter
    position_checks: Counter
    position_channels_checked: Counter
    position_channels_behind: Counter
    position_repairs: Counter
    client_reconnects: Counter
    client_recoveries: Counter
    client_gaps_repaired: Counter
    client_deaf_reconnects: Counter
    client_disconnected_seconds: Counter
    client_delayed_seconds: Counter
    client_telemetry_reports: Counter
    client_telemetry_ignored_keys: Counter
    registry: CollectorRegistry


class _Maker:
    """Makes metrics in one registry, with the arguments every metric of this module shares."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, doc: str, *labels: str) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(
        self, name: str, doc: str, combined: Literal["livesum", "liveall"], *labels: str
    ) -> Gauge:
        # How the multiprocess collector combines the workers' values (module docstring).
        return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode=combined)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, doc, buckets=buckets, registry=self.registry)


def build_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Create every metric in *registry* (a fresh one when None: tests build their own)."""
    reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
    make = _Maker(reg)
    counter, gauge, histogram = make.counter, make.gauge, make.histogram
    return Metrics(
        connections_open=gauge("herald_connections_open", "Open websocket connections.", "livesum"),
        worker_connections=gauge(
            "herald_worker_connections",
            "Open websocket connections of one worker (a series per worker pid in a fleet).",
            "liveall",
        ),
        connections_accepted=counter(
            "herald_connections_accepted", "Websocket handshakes accepted."
        ),
        fast_opens=counter(
            "herald_fast_opens",
            "Websocket handshakes whose upgrade request carried an open token (fast open).",
        ),
        handshakes_queued=gauge(
            "herald_handshakes_queued",
            "Upgrade requests waiting for a turn past max_handshakes in flight.",
            "livesum",
        ),
        handshakes_abandoned=counter(
            "herald_handshakes_abandoned",
            "Upgrade requests whose client left while they waited for a turn.",
        ),
        handshake_rejections=counter(
            "herald_handshake_rejections",
            "HTTP requests refused at the handshake, by reason.",
            "reason",
        ),
        metrics_refused=counter(
            "herald_metrics_refused",
            "GET /metrics on the websocket port answered 404 (metrics_port moves it elsewhere).",
        ),
        disconnects=counter(
            "herald_disconnects", "Connections closed by the server, by close code.", "code"
        ),
        subscriptions_open=gauge(
            "herald_subscriptions_open", "Client subscriptions held by connections.", "livesum"
        ),
        channels_subscribed=gauge(
            "herald_channels_subscribed",
            "Channels this worker is subscribed to on the bus.",
            "livesum",
        ),
        commands=counter("herald_commands", "Client commands received, by op.", "op"),
        errors=counter("herald_errors", "Error replies sent to clients, by error code.", "code"),
        publications_received=counter(
            "herald_publications_received", "Publications received from the bus."
        ),
        frames_delivered=counter(
            "herald_frames_delivered", "Publication frames handed to connections."
        ),
        # The three above by the channel's kind; they sum to the unlabelled ones, which stay
        # for the alerts and dashboards that use them (monitoring/README.md#by-namespace).
        namespace_publications=counter(
            "herald_namespace_publications_received",
            "Publications received from the bus, by the channel's namespace (kind).",
            "namespace",
        ),
        namespace_deliveries=counter(
            "herald_namespace_frames_delivered",
            "Publication frames handed to connections, by the channel's namespace (kind).",
            "namespace",
        ),
        namespace_subscriptions=gauge(
            "herald_namespace_subscriptions_open",
            "Client subscriptions held by connections, by the channel's namespace (kind).",
            "livesum",
            "namespace",
        ),
        bytes_written=counter("herald_bytes_written", "Bytes written to client transports."),
        fanout_duration=histogram(
            "herald_fanout_duration_seconds",
            "Time to hand one publication to every local subscriber.",
            _FANOUT_BUCKETS,
        ),
        delivery_latency=histogram(
            "herald_publish_to_fanout_seconds",
            "From the offset being taken on the bus to the fan-out on this worker.",
            _LATENCY_BUCKETS,
        ),
        recoveries=counter("herald_recoveries", "Subscribe-with-recovery outcomes.", "result"),
        subscribe_reads=counter(
            "herald_subscribe_reads",
            "Subscribes' reads of a channel's position and missed publications, by where they"
            " were answered (worker: the stream this worker holds live; bus: a history read).",
            "source",
        ),
        gap_repairs=counter(
            "herald_gap_repairs",
            "Worker-side repairs of a channel stream from history.",
            "result",
        ),
        bus_live=gauge(
            "herald_bus_live", "1 while this worker's bus subscription is live.", "liveall"
        ),
        bus_reconnects=counter(
            "herald_bus_reconnects", "Bus connection losses after which it reconnected."
        ),
        bus_invalid_messages=counter(
            "herald_bus_invalid_messages", "Bus messages that were not valid envelopes."
        ),
        bus_shard_connections=gauge(
            "herald_bus_shard_connections",
            "Bus pub/sub connections open (plain Redis: 0 or 1; cluster: one per shard needed).",
            "livesum",
        ),
        bus_recoveries=counter(
            "herald_bus_recoveries",
            "Bus recoveries (reconnect and resubscribe) completed, by the reason of the loss.",
            "reason",
        ),
        bus_channels_resubscribed=counter(
            "herald_bus_channels_resubscribed",
            "Channels resubscribed by bus recoveries.",
        ),
        bus_slot_moves=counter(
            "herald_bus_slot_moves",
            "Cluster slot moves (MOVED or an unasked sunsubscribe) the bus followed.",
        ),
        bus_recovery_duration=histogram(
            "herald_bus_recovery_seconds",
            "From a bus loss being noticed to the bus live and resubscribed again.",
            _RECOVERY_BUCKETS,
        ),
        frames_refused=counter(
            "herald_frames_refused",
            "Pings, pongs and fragments refused by the command rate limit, by kind.",
            "kind",
        ),
        replay_bytes=counter(
            "herald_replay_bytes", "Bytes of missed publications replayed by recoveries."
        ),
        replays_refused=counter(
            "herald_replays_refused",
            "Recoveries failed because the connection's replay budget was spent.",
        ),
        conflated=counter(
            "herald_conflated_publications",
            "Publications dropped from a slow connection's queue because a newer one with the"
            " same conflation key superseded them (docs/protocol.md#conflation).",
        ),
        heartbeats_delayed=counter(
            "herald_heartbeats_delayed",
            "Unanswered heartbeats given another pong timeout because the client was still"
            " reading its way to them (docs/protocol.md#heartbeats).",
        ),
        paced_replays=counter(
            "herald_paced_replays",
            "Replays paced to what the client drains, by result (started; then caught_up,"
            " lost: history trimmed under it, closed 4003; abandoned: the subscriber left).",
            "result",
        ),
        subscriptions_refused=counter(
            "herald_subscriptions_refused",
            "Subscribes refused by a worker bound, by reason (address, channels).",
            "reason",
        ),
        accept_errors=counter(
            "herald_accept_errors",
            "Failed accepts of the listening socket (EMFILE and the like), logged once a minute.",
        ),
        position_checks=counter(
            "herald_position_checks",
            "Position checks (one pipelined read of channel positions), by result (ok, failed).",
            "result",
        ),
        position_channels_checked=counter(
            "herald_position_channels_checked",
            "Channels whose position a position check compared with their stream.",
        ),
        position_channels_behind=counter(
            "herald_position_channels_behind",
            "Channels found behind by two position checks in a row (then repaired).",
        ),
        position_repairs=counter(
            "herald_position_repairs",
            "Repairs started by a position check, by result (repaired, failed).",
            "result",
        ),
        # What browsers report (docs/protocol.md#client-telemetry): bounded labels, clamped values,
        # trusted for nothing but these counters.
        client_reconnects=counter(
            "herald_client_reconnects",
            "Reconnects clients reported, by the close code they saw (the close table, 1006,"
            " local, other).",
            "code",
        ),
        client_recoveries=counter(
            "herald_client_recoveries",
            "Recoveries clients reported, by result (recovered, failed).",
            "result",
        ),
        client_gaps_repaired=counter(
            "herald_client_gaps_repaired",
            "Gaps in a channel's offsets clients reported (each repaired by reconnecting).",
        ),
        client_deaf_reconnects=counter(
            "herald_client_deaf_reconnects",
            "Reconnects clients reported because their socket went deaf (no frame in time).",
        ),
        client_disconnected_seconds=counter(
            "herald_client_disconnected_seconds",
            "Time clients reported without a connection, from losing one to the next connect.",
        ),
        client_delayed_seconds=counter(
            "herald_client_delayed_seconds",
            "Time clients reported connected while the server said delivery was paused.",
        ),
        client_telemetry_reports=counter(
            "herald_client_telemetry_reports",
            "Client telemetry reports, by result (accepted, clamped, invalid, early).",
            "result",
        ),
        client_telemetry_ignored_keys=counter(
            "herald_client_telemetry_ignored_keys",
            "Keys of accepted telemetry reports this server does not know (ignored).",
        ),
        registry=reg,
    )


class NamespaceSeries:
    """The series of one namespace (kind), made once per hub.

    A publication costs the fan-out two integer additions here (:attr:`received`,
    :attr:`delivered`), not four increments of prometheus-client values (these and the
    unlabelled ``herald_publications_received_total`` and ``herald_frames_delivered_total``),
    which take a lock each and, in a fleet, write to a memory-mapped file (1.6 us of a 13 us
    publication with one subscriber for two of them, measured in issue 14, item 5);
    :meth:`flush` adds them to the exported counters, at every sweep of the worker.
    Subscriptions change the gauge at once."""

    __slots__ = (
        "_delivered_all",
        "_delivered_total",
        "_received_all",
        "_received_total",
        "delivered",
        "received",
        "subscriptions",
    )

    def __init__(self, metrics: Metrics, namespace: str) -> None:
        self.received = 0
        """Publications received since the last :meth:`flush`."""
        self.delivered = 0
        """Frames handed to connections since the last :meth:`flush`."""
        self.subscriptions: Gauge = metrics.namespace_subscriptions.labels(namespace)
        self._received_total: Counter = metrics.namespace_publications.labels(namespace)
        self._delivered_total: Counter = metrics.namespace_deliveries.labels(namespace)
        self._received_all = metrics.publications_received
        self._delivered_all = metrics.frames_delivered

    def flush(self) -> None:
        """Add what was counted since the last flush to the exported counters: this
        namespace's, and the unlabelled ones they sum to."""
        if self.received:
            self._received_total.inc(self.received)
            self._received_all.inc(self.received)
            self.received = 0
        if self.delivered:
            self._delivered_total.inc(self.delivered)
            self._delivered_all.inc(self.delivered)
            self.delivered = 0


class HistogramBatch:
    """Observations of one unlabelled histogram counted in plain integers, and added to it
    bucket by bucket at :meth:`flush` (after every sweep, as :class:`NamespaceSeries`).

    ``Histogram.observe`` walks the bounds and takes two locks (in a fleet, two writes to
    the multiprocess file): the fan-out observes two histograms per publication, and they
    were a quarter of the worker's Python time for a publication with two subscribers. The
    exported histogram is the one observing each value would give, a sweep later. It adds
    to prometheus-client's own bucket values (``_buckets``, ``_sum``: not part of its
    documented API; tests/socketsrv/test_metrics_batch.py checks it against ``observe``)."""

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._bounds: list[float] = list(histogram._upper_bounds)  # ends with +Inf
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count *value* in the first bucket whose upper bound is at least *value*."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self._sum += value

    def flush(self) -> None:
        """Add what was observed since the last flush to the histogram."""
        counts = self._counts
        if not any(counts):
            return
        buckets = self._histogram._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
        self._histogram._sum.inc(self._sum)
        self._counts = [0] * len(counts)
        self._sum = 0.0


def namespace_series(metrics: Metrics, kinds: Iterable[str]) -> dict[str, NamespaceSeries]:
    """One :class:`NamespaceSeries` per kind of *kinds* (a namespace file's), each exported at
    0 from now on: the ``namespace`` label has these values and no others."""
    return {kind: NamespaceSeries(metrics, kind) for kind in kinds}


def render(metrics: Metrics, multiproc_dir: str | None) -> bytes:
    """The Prometheus text exposition; with *multiproc_dir*, summed over the fleet."""
    if multiproc_dir:
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg, path=multiproc_dir)  # type: ignore[no-untyped-call]
        return generate_latest(reg)
    return generate_latest(metrics.registry)
