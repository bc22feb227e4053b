"""launch/prober.py: probes published to a real Redis reach a real worker's websockets, timed;
when delivery breaks, the prober counts the misses.

The prober's clock is a fake one the tests move: a probe is missed when the test says its
deadline has passed, never because a machine was slow. Every wait is for a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from herald_contract.backoff import Backoff
from herald_contract.config import SettingsError
from herald_contract.errors import PublishFailed
from launch.probe_connection import ConnectionState
from launch.prober import (
    MetricsListener,
    Prober,
    ProberSettings,
    build_probe_metrics,
    metrics_port_taken,
    prober_settings,
)
from publisher.publish import Publisher
from socketsrv.worker import Worker
from tests.support.commands import clean_env, port_in_use, run_command
from tests.support.haproxy import running_topology
from tests.support.redis_server import RedisServer
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import eventually
from tests.support.worker import metric, running_worker, ws_url

DEADLINE_S = 10.0
FAST_BACKOFF = Backoff(0.01, 0.05)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sample(prober: Prober, name: str, **labels: str) -> float:
    value = prober.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def missed(prober: Prober, reason: str = "deadline") -> float:
    return sample(prober, "herald_probe_missed_total", reason=reason)


def probes_timed(prober: Prober) -> float:
    return sample(prober, "herald_probe_latency_seconds_count")


def connections_in(prober: Prober, state: ConnectionState) -> float:
    return sample(prober, "herald_probe_connections", state=state.value)


async def all_live(prober: Prober) -> None:
    count = prober.settings.connections
    await eventually(lambda: connections_in(prober, ConnectionState.LIVE) == count)
    await eventually(lambda: len(prober.ledger.members) == count)


@contextlib.asynccontextmanager
async def probing(
    url: str, publish: Any, clock: FakeClock, **settings: Any
) -> AsyncIterator[Prober]:
    prober = Prober(
        ProberSettings(url=url, deadline_s=DEADLINE_S, metrics_port=0, **settings),
        publish,
        build_probe_metrics(),
        clock=clock,
        backoff=FAST_BACKOFF,
    )
    prober.start()
    try:
        yield prober
    finally:
        await prober.stop()


@contextlib.asynccontextmanager
async def publisher_on(redis: RedisServer) -> AsyncIterator[Publisher]:
    async with Publisher(redis.url) as publisher:
        yield publisher


def proxy_url(proxy: TcpProxy) -> str:
    return f"ws://127.0.0.1:{proxy.url.rsplit(':', 1)[1]}/ws"


async def bus_down(worker: Worker) -> None:
    await eventually(lambda: metric(worker, "herald_bus_live") == 0)


# Delivery that works


async def test_every_connection_receives_each_probe_and_its_latency_is_observed(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    async with (
        running_worker(redis_url=redis_server.url) as worker,
        publisher_on(redis_server) as publisher,
        probing(ws_url(worker), publisher.publish, clock) as prober,
    ):
        await all_live(prober)
        for _ in range(3):
            await prober.probe_once()
            await eventually(lambda: prober.ledger.outstanding == 0)
        clock.advance(DEADLINE_S)
        assert prober.expire() == 0
        assert probes_timed(prober) == 9
        assert missed(prober) == 0
        assert sample(prober, "herald_probe_sent_total") == 3


async def test_a_probe_missed_while_a_connection_was_cut_is_recovered_on_reconnect(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    async with running_worker(redis_url=redis_server.url) as worker:
        proxy = TcpProxy(worker.port)
        await proxy.restore()
        try:
            async with (
                publisher_on(redis_server) as publisher,
                probing(proxy_url(proxy), publisher.publish, clock, connections=2) as prober,
            ):
                await all_live(prober)
                await prober.probe_once()
                await eventually(lambda: prober.ledger.outstanding == 0)
                await proxy.cut()
                await eventually(lambda: connections_in(prober, ConnectionState.LIVE) == 0)
                await prober.probe_once()
                await proxy.restore()
                await eventually(lambda: prober.ledger.outstanding == 0, timeout_s=10)
                clock.advance(DEADLINE_S)
                assert prober.expire() == 0
                assert probes_timed(prober) == 4
                assert sample(prober, "herald_probe_disconnects_total", code="none") >= 2
        finally:
            await proxy.cut()


async def test_probes_of_another_prober_run_on_the_same_channel_are_ignored(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    async with (
        running_worker(redis_url=redis_server.url) as worker,
        publisher_on(redis_server) as publisher,
        probing(ws_url(worker), publisher.publish, clock, connections=1) as prober,
    ):
        await all_live(prober)
        await publisher.publish("probe:herald", {"probe": 1, "run": "another", "sent_ms": 0})
        await prober.probe_once()
        await eventually(lambda: prober.ledger.outstanding == 0)
        assert probes_timed(prober) == 1


# Delivery that breaks


async def test_with_the_workers_bus_cut_every_connection_misses_the_probe(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    redis_link = TcpProxy(redis_server.port)
    await redis_link.restore()
    try:
        async with (
            running_worker(redis_url=redis_link.url) as worker,
            publisher_on(redis_server) as publisher,
            probing(ws_url(worker), publisher.publish, clock) as prober,
        ):
            await all_live(prober)
            await redis_link.cut()  # the worker's bus, not the publisher's path
            await bus_down(worker)
            await prober.probe_once()
            assert sample(prober, "herald_probe_sent_total") == 1
            clock.advance(DEADLINE_S - 0.001)
            assert prober.expire() == 0
            clock.advance(0.001)
            assert prober.expire() == 3
            assert missed(prober) == 3
            assert probes_timed(prober) == 0
    finally:
        await redis_link.cut()


async def test_a_publish_that_fails_is_a_miss_for_every_connection(
    redis_server: RedisServer,
) -> None:
    async def refused(channel: str, data: Any) -> object:
        raise PublishFailed(channel, "Redis unreachable")

    async with (
        running_worker(redis_url=redis_server.url) as worker,
        probing(ws_url(worker), refused, FakeClock()) as prober,
    ):
        await all_live(prober)
        await prober.probe_once()
        assert missed(prober, "publish_failed") == 3
        assert sample(prober, "herald_probe_publish_failures_total") == 1
        assert sample(prober, "herald_probe_sent_total") == 0
        assert prober.ledger.outstanding == 0


async def test_connections_refused_with_4500_stop_and_owe_nothing(
    redis_server: RedisServer,
) -> None:
    async with (
        running_worker(redis_url=redis_server.url, allow_anonymous=False) as worker,
        publisher_on(redis_server) as publisher,
        probing(ws_url(worker), publisher.publish, FakeClock()) as prober,
    ):
        await eventually(lambda: connections_in(prober, ConnectionState.STOPPED) == 3)
        assert sample(prober, "herald_probe_disconnects_total", code="4500") == 3
        await prober.probe_once()
        assert prober.ledger.outstanding == 0


# Settings, the metrics listener and the command


def test_the_defaults_probe_the_local_fleet_every_five_seconds_on_three_connections() -> None:
    settings = ProberSettings.from_env({})
    assert (settings.url, settings.channel) == ("ws://127.0.0.1:8000/ws", "probe:herald")
    assert (settings.interval_s, settings.deadline_s, settings.connections) == (5.0, 10.0, 3)
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9102)


def test_settings_come_from_herald_probe_variables_and_the_shared_redis_url() -> None:
    settings = ProberSettings.from_env(
        {
            "HERALD_PROBE_URL": "wss://herald.example/ws",
            "HERALD_PROBE_CHANNEL": "probe:eu-west-1",
            "HERALD_PROBE_INTERVAL_S": "2",
            "HERALD_PROBE_CONNECTIONS": "5",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "HERALD_KEY_PREFIX": "site",
        }
    )
    assert (settings.url, settings.channel) == ("wss://herald.example/ws", "probe:eu-west-1")
    assert (settings.interval_s, settings.connections) == (2.0, 5)
    assert (settings.redis_url, settings.key_prefix) == ("redis://127.0.0.1:6379/0", "site")


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("HERALD_PROBE_CHANNEL", "question:1", "is not a probe channel"),
        ("HERALD_PROBE_CHANNEL", "probe:Upper", "a probe name is 1-32 characters"),
        ("HERALD_PROBE_URL", "http://127.0.0.1:8000/ws", "is not a ws:// or wss:// URL"),
        ("HERALD_PROBE_CONNECTIONS", "0", ""),
        ("HERALD_PROBE_CONNECTIONS", "101", ""),
        ("HERALD_PROBE_INTERVAL_S", "0", ""),
        ("HERALD_PROBE_DEADLINE_S", "-1", ""),
        ("HERALD_PROBE_METRICS_PORT", "65536", ""),
    ],
)
def test_a_setting_that_cannot_work_is_refused_naming_its_variable(
    variable: str, value: str, why: str
) -> None:
    with pytest.raises(SettingsError, match=why or None) as caught:
        ProberSettings.from_env({variable: value})
    assert str(caught.value).startswith(f"{variable}: ")


def test_a_launcher_points_the_prober_at_its_fleet_unless_a_url_is_set() -> None:
    fleet = "ws://127.0.0.1:8123/ws"
    assert prober_settings({}, url=fleet).url == fleet
    elsewhere = {"HERALD_PROBE_URL": "ws://127.0.0.1:9000/ws"}
    assert prober_settings(elsewhere, url=fleet).url == "ws://127.0.0.1:9000/ws"


def test_the_metrics_listener_serves_the_probe_metrics() -> None:
    metrics = build_probe_metrics()
    metrics.latency.observe(0.02)
    listener = MetricsListener.start(ProberSettings(metrics_port=0), metrics.registry)
    try:
        url = f"http://127.0.0.1:{listener.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    finally:
        listener.close()
    assert 'herald_probe_latency_seconds_bucket{le="1.0"} 1.0' in body
    assert 'herald_probe_missed_total{reason="deadline"} 0.0' in body
    assert 'herald_probe_connections{state="live"} 0.0' in body


def test_a_metrics_port_in_use_is_named_in_one_line() -> None:
    with port_in_use() as port:
        taken = metrics_port_taken(ProberSettings(metrics_port=port))
    assert taken is not None
    assert taken.startswith(f"cannot listen on 127.0.0.1:{port} (HERALD_PROBE_METRICS_PORT): ")


def test_the_command_without_a_redis_url_says_so_in_one_line(tmp_path: Path) -> None:
    ended = run_command(["launch.prober"], clean_env())
    assert ended.returncode == 2
    assert ended.last_line == "launch.prober: HERALD_REDIS_URL is not set (nothing to publish to)"


def test_the_command_refuses_a_bad_setting_in_one_line() -> None:
    ended = run_command(["launch.prober"], clean_env(HERALD_PROBE_CHANNEL="tag:python"))
    assert ended.returncode == 2
    assert ended.last_line.startswith("launch.prober: HERALD_PROBE_CHANNEL: ")


# Through the load balancer

HOST_ENV = {
    "HERALD_RECONNECT_SPREAD_S": "0.5",
    "HERALD_DRAIN_BATCH_INTERVAL_S": "0.01",
    "HERALD_UNSUBSCRIBE_GRACE_S": "1",
}


@pytest.mark.timeout(240)
async def test_through_haproxy_a_rolling_deploy_costs_no_probe(
    redis_server: RedisServer, run_dir: Path
) -> None:
    clock = FakeClock()
    with running_topology(
        hosts=2, workers=1, redis_url=redis_server.url, run_dir=run_dir, **HOST_ENV
    ) as topology:
        async with (
            publisher_on(redis_server) as publisher,
            probing(topology.url, publisher.publish, clock) as prober,
        ):
            await all_live(prober)
            rolled = asyncio.ensure_future(asyncio.to_thread(topology.roll))
            while not rolled.done():  # probes all along the deploy, at most one per 0.2 s
                await prober.probe_once()
                await asyncio.sleep(0.2)
            await rolled
            await prober.probe_once()
            await eventually(lambda: prober.ledger.outstanding == 0, timeout_s=30)
            clock.advance(DEADLINE_S)
            assert prober.expire() == 0
            assert probes_timed(prober) == 3 * sample(prober, "herald_probe_sent_total")
            assert sample(prober, "herald_probe_disconnects_total", code="4000") >= 1
