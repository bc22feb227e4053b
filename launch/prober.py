"""The end-to-end prober: probes published through the real path, received through the public
endpoint, timed (issue 12, item 5).

    HERALD_REDIS_URL=redis://127.0.0.1:6379/0 python -m launch.prober

Every ``interval_s`` it publishes one probe on its channel (``probe:<name>``, a kind reserved
for it: docs/protocol.md#channels) with :class:`publisher.Publisher`, as any backend does, and
holds ``connections`` websocket connections to the public endpoint ``url`` (the load balancer
where there is one), each subscribed to that channel with recovery like a browser
(:mod:`launch.probe_connection`). It exports on its own ``/metrics`` listener
(``metrics_host:metrics_port``): the publish-to-receive latency of every probe on every
connection (``herald_probe_latency_seconds``), the probes a connection did not receive within
``deadline_s`` (``herald_probe_missed_total``), the probes sent, and the connections by state
(monitoring/README.md). Latency is measured on this process's monotonic clock from just
before the publish to the receipt: no clock skew.

Settings: ``HERALD_PROBE_<FIELD>``, plus the settings every publisher shares with the fleet
(``HERALD_REDIS_URL``, ``HERALD_KEY_PREFIX``, history retention): docs/configuration.md#prober.
``./herald run`` starts it beside the fleet unless ``--no-prober``: :mod:`launch.system` runs
this program, :mod:`launch.embedded` runs :func:`running_prober` in its own process, publishing
on the in-process bus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pydantic import Field, field_validator, model_validator

from herald_contract.backoff import Backoff
from herald_contract.channels import ChannelKind, parse_channel
from herald_contract.config import (
    BusSettings,
    PositiveSeconds,
    SettingProblem,
    SettingsError,
    cannot_bind,
    configure_logging,
)
from herald_contract.errors import BusUnavailable, InvalidChannel, PublishFailed
from launch.probe_connection import ConnectionListener, ConnectionState, ProbeConnection
from launch.probe_ledger import ProbeLedger, parse_probe, probe_data
from publisher.publish import Publisher

logger = logging.getLogger(__name__)

Publish = Callable[[str, Any], Awaitable[object]]
"""Publish plain data to a channel, like ``Publisher.publish``."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""1.0 is the SLO's threshold (monitoring/alerts.yml: 99.9% of probes within 1 s)."""

MISSED_REASONS = ("deadline", "publish_failed")


class ProberSettings(BusSettings):
    """The prober's settings (docs/configuration.md#prober)."""

    ENV_PREFIX: ClassVar[str] = "HERALD_PROBE_"

    url: str = "ws://127.0.0.1:8000/ws"
    channel: str = "probe:herald"
    interval_s: PositiveSeconds = 5.0
    deadline_s: PositiveSeconds = 10.0
    connections: Annotated[int, Field(ge=1, le=100)] = 3
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9102
    reply_timeout_s: PositiveSeconds = 10.0
    reconnect_base_s: PositiveSeconds = 0.5
    reconnect_cap_s: PositiveSeconds = 30.0

    @field_validator("url")
    @classmethod
    def _a_websocket_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError(f"{value!r} is not a ws:// or wss:// URL")
        return value

    @model_validator(mode="after")
    def _a_probe_channel(self) -> Self:
        """A channel of the namespace file's ``probe`` kind (checked once it is loaded)."""
        try:
            channel = parse_channel(self.channel, self.namespaces())
        except InvalidChannel as exc:
            raise SettingProblem("channel", str(exc)) from None
        if channel.kind != ChannelKind.PROBE:
            raise SettingProblem(
                "channel", f"{self.channel!r} is not a probe channel (probe:<name>)"
            )
        return self

    def backoff(self) -> Backoff:
        return Backoff(self.reconnect_base_s, max(self.reconnect_base_s, self.reconnect_cap_s))


def prober_settings(env: Mapping[str, str], *, url: str) -> ProberSettings:
    """The settings of a prober that a launcher starts beside its fleet: *url* (the fleet's
    public endpoint) unless ``HERALD_PROBE_URL`` is set. Raises :class:`SettingsError`."""
    return ProberSettings.from_env(env, **({} if env.get("HERALD_PROBE_URL") else {"url": url}))


@dataclass(frozen=True, slots=True)
class ProbeMetrics:
    """Every metric the prober exports (monitoring/README.md), on its own registry."""

    latency: Histogram
    missed: Counter
    sent: Counter
    publish_failures: Counter
    connections: Gauge
    disconnects: Counter
    registry: CollectorRegistry


def build_probe_metrics(registry: CollectorRegistry | None = None) -> ProbeMetrics:
    registry = CollectorRegistry() if registry is None else registry
    metrics = ProbeMetrics(
        latency=Histogram(
            "herald_probe_latency_seconds",
            "From just before a probe's publish to its receipt on one prober connection.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        missed=Counter(
            "herald_probe_missed",
            "Probes a prober connection did not receive within deadline_s (reason deadline),"
            " or could not receive because the publish failed (reason publish_failed).",
            ["reason"],
            registry=registry,
        ),
        sent=Counter("herald_probe_sent", "Probes published.", registry=registry),
        publish_failures=Counter(
            "herald_probe_publish_failures", "Probe publishes that failed.", registry=registry
        ),
        connections=Gauge(
            "herald_probe_connections",
            "Prober connections by state (connecting, live, backoff, stopped).",
            ["state"],
            registry=registry,
        ),
        disconnects=Counter(
            "herald_probe_disconnects",
            "Prober connections lost, by the close code received (none: no close frame).",
            ["code"],
            registry=registry,
        ),
        registry=registry,
    )
    for reason in MISSED_REASONS:
        metrics.missed.labels(reason=reason)
    for state in ConnectionState:
        metrics.connections.labels(state=state.value)
    return metrics


class Prober(ConnectionListener):
    """Probes one channel through *publish* and *settings.connections* connections.

    :meth:`start` opens the connections; :meth:`probe_once` publishes one probe and
    :meth:`expire` counts the misses due (both on *clock*, a monotonic clock in seconds);
    :meth:`run` does both every ``interval_s`` until cancelled; :meth:`stop` closes all.
    """

    def __init__(
        self,
        settings: ProberSettings,
        publish: Publish,
        metrics: ProbeMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.run_id = secrets.token_hex(4)
        """Tells this run's probes from an earlier run's (replayed history) or another prober's."""
        self.ledger = ProbeLedger(settings.deadline_s)
        self.connections = [
            ProbeConnection(
                index,
                settings.url,
                settings.channel,
                self,
                backoff=backoff or settings.backoff(),
                reply_timeout_s=settings.reply_timeout_s,
            )
            for index in range(settings.connections)
        ]
        self._publish = publish
        self._clock = clock
        self._wall_clock = wall_clock
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        metrics.connections.labels(state=ConnectionState.CONNECTING.value).set(
            len(self.connections)
        )

    def start(self) -> None:
        """Open the connections (each reconnects by itself until :meth:`stop`)."""
        if self._tasks:
            raise RuntimeError("the prober is already started")
        self._tasks = [asyncio.ensure_future(connection.run()) for connection in self.connections]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self) -> None:
        """Probe every ``interval_s`` and count the misses, until cancelled."""
        while True:
            await self.probe_once()
            self.expire()
            await asyncio.sleep(self.settings.interval_s)

    async def probe_once(self) -> int:
        """Publish the next probe; its number. A failed publish is a miss for every connection
        that owed it (reason ``publish_failed``), logged."""
        self._seq += 1
        seq = self._seq
        # Owed before the publish: a fast fleet delivers before the publish returns.
        self.ledger.sent(seq, self._clock())
        data = probe_data(seq, self.run_id, round(self._wall_clock() * 1000))
        try:
            await self._publish(self.settings.channel, data)
        except (PublishFailed, BusUnavailable) as exc:
            logger.warning("probe %d: publish failed: %s", seq, exc)
            self.metrics.publish_failures.inc()
            self.metrics.missed.labels(reason="publish_failed").inc(self.ledger.withdraw(seq))
        else:
            self.metrics.sent.inc()
        return seq

    def expire(self) -> int:
        """Count the probes past ``deadline_s`` that a connection still owed; how many."""
        missed = self.ledger.expire(self._clock())
        self.metrics.missed.labels(reason="deadline").inc(missed)
        return missed

    # ConnectionListener

    def state_changed(self, index: int, old: ConnectionState, new: ConnectionState) -> None:
        self.metrics.connections.labels(state=old.value).dec()
        self.metrics.connections.labels(state=new.value).inc()
        if new is ConnectionState.STOPPED:
            self.ledger.leave(index)

    def subscribed(self, index: int) -> None:
        self.ledger.join(index)

    def published(self, index: int, data: Any) -> None:
        probe = parse_probe(data)
        if probe is None or probe.run != self.run_id:
            return
        latency_s = self.ledger.received(index, probe.seq, self._clock())
        if latency_s is not None:
            self.metrics.latency.observe(latency_s)

    def lost(self, index: int, code: int | None) -> None:
        self.metrics.disconnects.labels(code="none" if code is None else str(code)).inc()


class MetricsListener:
    """``/metrics`` of a prober's registry on ``metrics_host:metrics_port`` (a thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @classmethod
    def start(cls, settings: ProberSettings, registry: CollectorRegistry) -> MetricsListener:
        server, thread = start_http_server(
            settings.metrics_port, settings.metrics_host, registry=registry
        )
        return cls(server, thread)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def metrics_port_taken(settings: ProberSettings) -> str | None:
    """Why the metrics listener cannot listen, in one line; None when it can."""
    if settings.metrics_port == 0:
        return None
    why = cannot_bind(settings.metrics_host, settings.metrics_port)
    if why is None:
        return None
    where = f"{settings.metrics_host}:{settings.metrics_port}"
    return f"cannot listen on {where} (HERALD_PROBE_METRICS_PORT): {why}"


@contextlib.asynccontextmanager
async def running_prober(settings: ProberSettings, publish: Publish) -> AsyncIterator[Prober]:
    """A started prober and its metrics listener, probing until the block ends."""
    metrics = build_probe_metrics()
    listener = MetricsListener.start(settings, metrics.registry)
    prober = Prober(settings, publish, metrics)
    prober.start()
    probing = asyncio.ensure_future(prober.run())
    logger.info(
        "prober: %d connections to %s, %s every %g s, /metrics on %s:%d",
        settings.connections,
        settings.url,
        settings.channel,
        settings.interval_s,
        settings.metrics_host,
        listener.port,
    )
    try:
        yield prober
    finally:
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
        await prober.stop()
        listener.close()


async def _probe_over_redis(settings: ProberSettings, redis_url: str) -> None:
    async with (
        Publisher(
            redis_url,
            prefix=settings.key_prefix,
            history_size=settings.history_size,
            history_ttl_s=settings.history_ttl_s,
            meta_ttl_s=settings.meta_ttl_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            namespaces=settings.namespaces(),
        ) as publisher,
        running_prober(settings, publisher.publish),
    ):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.prober",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        settings = ProberSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"launch.prober: {exc}", file=sys.stderr)
        return 2
    if settings.redis_url is None:
        print("launch.prober: HERALD_REDIS_URL is not set (nothing to publish to)", file=sys.stderr)
        return 2
    if (taken := metrics_port_taken(settings)) is not None:
        print(f"launch.prober: {taken}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level)
    asyncio.run(_probe_over_redis(settings, settings.redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
