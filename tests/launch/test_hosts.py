"""Two fleet hosts behind HAProxy (launch/hosts.py, deploy/haproxy.cfg.template) and a rolling
deploy: 200 clients connected through HAProxy keep every publication, once and in order,
while each host in turn is drained at the load balancer, drained itself and restarted.

Nothing depends on which host or worker HAProxy or the kernel picks: every client is closed
at least once (each host is drained in turn, and the host drained last holds every client by
then), and the assertions are on what each client received.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import WebSocketException

from launch.hosts import (
    FAST_CHECKS,
    MAX_CONNECTIONS,
    ROOT,
    Balancer,
    HostsError,
    check_config,
    host_addresses,
    render_haproxy_config,
    render_nginx_config,
)
from publisher.publish import Publisher
from socketsrv.protocol.codes import should_reconnect
from tests.support import haproxy as haproxy_support
from tests.support.client import HeraldTestClient
from tests.support.haproxy import require_haproxy, running_topology
from tests.support.redis_server import RedisServer

CHANNELS = [f"question:{i}" for i in range(1, 9)] + ["questions:new", "tag:python"]
CLIENTS = 200
HOST_ENV = {
    "HERALD_RECONNECT_SPREAD_S": "0.5",
    "HERALD_DRAIN_BATCH_INTERVAL_S": "0.01",
    "HERALD_UNSUBSCRIBE_GRACE_S": "1",
}


def test_the_rendered_haproxy_config_passes_haproxy_check(run_dir: Path) -> None:
    require_haproxy()
    balancer = Balancer("127.0.0.1", 8000, 8404, run_dir)
    text = render_haproxy_config(host_addresses(2, 8001), balancer, checks=FAST_CHECKS)
    for line in (
        "mode http",
        "balance leastconn",
        "option httpchk GET /readyz",
        "default-server send-proxy-v2 check-send-proxy",  # the client's address, checks too
        "timeout tunnel",
        "timeout client-fin",
        "server h1 127.0.0.2:8001 check",
        "server h2 127.0.0.3:8001 check",
        f"maxconn {MAX_CONNECTIONS}",
        "prometheus-exporter",
    ):
        assert line in text, line
    assert MAX_CONNECTIONS < 9900  # two sockets per client, 20,000 open files per process
    balancer.config_path.write_text(text)
    assert "Configuration file is valid" in check_config(balancer.config_path)


def test_the_rendered_nginx_config_proxies_websockets_to_every_host(run_dir: Path) -> None:
    """Checked statically (CI installs no nginx): `nginx -t -c` on this file passes with
    Debian's nginx 1.22 (deploy/README.md)."""
    balancer = Balancer("127.0.0.1", 8000, 8404, run_dir)
    text = render_nginx_config(host_addresses(2, 8001), balancer)
    for line in (
        "least_conn;",
        "server 127.0.0.2:8001 max_fails=2 fail_timeout=5s;",
        "server 127.0.0.3:8001 max_fails=2 fail_timeout=5s;",
        "listen 127.0.0.1:8000;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 1h;",
        f"worker_connections {MAX_CONNECTIONS};",
        f"pid {run_dir}/nginx.pid;",
    ):
        assert line in text, line
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert code.count("{") == code.count("}")
    assert "$$" not in text


def channels_of(index: int) -> list[str]:
    return sorted(
        {CHANNELS[index % 10], CHANNELS[(index * 3 + 1) % 10], CHANNELS[(index + 5) % 10]}
    )


class RollingClient:
    """A client that reconnects through the load balancer, with recovery, when closed."""

    def __init__(self, url: str, channels: list[str]) -> None:
        self.client = HeraldTestClient(url)
        self.wanted = channels
        self.first_offsets: dict[str, int] = {}
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.open()
        for channel in self.wanted:
            reply = await self.client.subscribe(channel)
            assert reply["type"] == "reply", reply
            self.first_offsets[channel] = reply["result"]["offset"]
        self._task = asyncio.ensure_future(self._stay_connected())

    async def _resume(self) -> None:
        await self.client.abort()
        await self.client.open()
        for channel in self.wanted:
            reply = await self.client.subscribe(channel, recover=True)
            if reply["type"] != "reply":
                raise ConnectionError(f"resubscribe refused: {reply}")

    async def _stay_connected(self) -> None:
        while True:
            code, _ = await self.client.wait_closed(timeout=3600)
            if code is not None and not should_reconnect(code):
                return
            for attempt in range(200):
                await asyncio.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))
                try:
                    await self._resume()
                except (OSError, TimeoutError, ConnectionError, WebSocketException):
                    continue
                self.reconnects += 1
                break

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()


async def start_clients(url: str) -> list[RollingClient]:
    clients = [RollingClient(url, channels_of(i)) for i in range(CLIENTS)]
    gate = asyncio.Semaphore(25)

    async def start(client: RollingClient) -> None:
        async with gate:
            await client.start()

    await asyncio.gather(*(start(c) for c in clients))
    return clients


async def publish_until(
    redis_url: str, done: asyncio.Event, published: dict[tuple[str, int], Any], cap: int
) -> None:
    """Publish paced items on random channels until *done* is set (at most *cap*)."""
    rng = random.Random(7)
    async with Publisher(redis_url) as publisher:
        for k in range(cap):
            if done.is_set():
                break
            channel = rng.choice(CHANNELS)
            data = {"seq": k}
            result = await publisher.publish(channel, data, event_id=f"roll-{k}")
            published[(channel, result.position.offset)] = data
            await asyncio.sleep(0.02)  # pacing, not a wait: the run spans the deploy
        for channel in CHANNELS:  # one more each after the deploy, on the rolled hosts
            result = await publisher.publish(channel, {"after": True}, event_id=f"after-{channel}")
            published[(channel, result.position.offset)] = {"after": True}


async def wait_caught_up(
    clients: list[RollingClient], tops: dict[str, int], timeout_s: float
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        behind = [
            (c.reconnects, ch, log.offset, tops[ch], log.recoveries)
            for c in clients
            for ch, log in c.client.channels.items()
            if log.offset != tops[ch]
        ]
        if not behind:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(behind)} subscriptions behind: {behind[:5]}")
        await asyncio.sleep(0.05)


@pytest.mark.redis
@pytest.mark.timeout(240)
async def test_a_rolling_deploy_behind_haproxy_loses_and_repeats_nothing(
    redis_server: RedisServer, run_dir: Path
) -> None:
    with running_topology(
        hosts=2, workers=2, redis_url=redis_server.url, run_dir=run_dir, **HOST_ENV
    ) as topology:
        async with Publisher(redis_server.url) as warmup:
            for channel in CHANNELS:  # every channel has an epoch before clients subscribe
                await warmup.publish(channel, {"warmup": True})
        clients = await start_clients(topology.url)
        sessions_at: dict[tuple[str, str], int] = {}

        def look(host: str, step: str) -> None:
            sessions_at[(host, step)] = int(topology.lb.server_stats()[host]["stot"])

        done = asyncio.Event()
        published: dict[tuple[str, int], Any] = {}
        publishing = asyncio.ensure_future(publish_until(redis_server.url, done, published, 2000))
        try:
            await asyncio.to_thread(topology.roll, look)
        finally:
            done.set()
            await publishing
        tops = {ch: max(o for c, o in published if c == ch) for ch in CHANNELS}
        await wait_caught_up(clients, tops, timeout_s=60)

        for host in ("h1", "h2"):
            # HAProxy sent the host nobody from the moment it reported DRAIN (before the
            # SIGTERM) until it was put back, after the restarted host answered ready.
            assert sessions_at[(host, "drained")] == sessions_at[(host, "restarted")], sessions_at
        assert all(h.starts == 2 for h in topology.hosts)
        for c in clients:
            assert c.reconnects >= 1
            for channel in c.wanted:
                expected = list(range(c.first_offsets[channel] + 1, tops[channel] + 1))
                assert c.client.offsets(channel) == expected, (channel, c.client.offsets(channel))
                assert c.client.data(channel) == [published[(channel, o)] for o in expected]
                recoveries = c.client.channels[channel].recoveries
                assert recoveries[0] == "none"
                assert set(recoveries[1:]) == {"recovered"}, recoveries
        print(
            f"{len(clients)} clients, {len(published)} publications during the deploy, "
            f"{sum(c.reconnects for c in clients)} reconnects through HAProxy"
        )
        for c in clients:
            await c.stop()


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_crashed_host_leaves_the_rotation_by_health_check_and_comes_back(
    redis_server: RedisServer, run_dir: Path
) -> None:
    with running_topology(
        hosts=2, workers=1, redis_url=redis_server.url, run_dir=run_dir, **HOST_ENV
    ) as topology:
        crashed, survivor = topology.hosts
        crashed.close()  # SIGKILL of the whole host: no drain, no runtime API
        await asyncio.to_thread(topology.lb.wait_status, "h1", "DOWN", 30.0)
        before = int(topology.lb.server_stats()["h1"]["stot"])

        clients = [HeraldTestClient(topology.url) for _ in range(20)]
        for client in clients:  # every one is accepted: HAProxy sends them all to h2
            await client.open()
            assert (await client.subscribe("question:1"))["type"] == "reply"
        async with Publisher(redis_server.url) as publisher:
            result = await publisher.publish("question:1", {"after": "crash"})
        offset = result.position.offset
        for client in clients:
            await wait_caught_up_one(client, "question:1", offset)
            assert client.data("question:1") == [{"after": "crash"}]
        assert int(topology.lb.server_stats()["h1"]["stot"]) == before
        assert int(topology.lb.server_stats()["h2"]["scur"]) >= len(clients)

        crashed.start()  # back by its /readyz alone: no `set server` this time
        await asyncio.to_thread(crashed.wait_ready)
        await asyncio.to_thread(topology.lb.wait_status, "h1", "UP", 30.0)
        assert survivor.running
        for client in clients:
            await client.close()


async def wait_caught_up_one(client: HeraldTestClient, channel: str, offset: int) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while client.channels[channel].offset != offset:
        assert asyncio.get_running_loop().time() < deadline, client.offsets(channel)
        await asyncio.sleep(0.02)


def test_a_missing_haproxy_fails_the_test_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> str:
        raise HostsError("haproxy is not installed")

    monkeypatch.setattr(haproxy_support, "haproxy_binary", missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        haproxy_support.require_haproxy()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        haproxy_support.require_haproxy()


def test_the_hosts_launcher_needs_a_redis_url_and_says_so_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HERALD_REDIS_URL", "REDIS_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "launch.hosts", "--hosts", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "launch.hosts: several hosts need one Redis: set --redis-url"
    ]
