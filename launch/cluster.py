"""The production topology from local processes (``./herald cluster up``).

    python -m launch.cluster [--primaries 3] [--replicas 1] [--hosts 2] [--workers 2]
        [--qa-workers 2] [--port 8080] [--socket-port 8000] [--host-port 8000]
        [--health-port 8001] [--stats-port 8404] [--database-url URL]

Starts, under one temporary work directory (removed on exit):

* a Redis Cluster of ``--primaries`` primaries with ``--replicas`` replicas each (3 + 3 by
  default) on free loopback ports (:mod:`launch.redis_cluster`);
* ``--hosts`` fleet hosts (``python -m socketsrv --workers W`` on 127.0.0.2, 127.0.0.3, ...)
  on the cluster (``redis+cluster://`` URL), behind HAProxy on 127.0.0.1 (:mod:`launch.hosts`);
* the Q&A core (``python -m qasite serve --workers M``) on ``--port``, its database SQLite in
  the work directory unless ``--database-url`` names one (migrated first), its relay
  publishing through the cluster, its pages connecting through HAProxy.

One banner then lists the URLs (site, websocket through HAProxy, HAProxy stats, each host's
``/metrics``, the cluster's seed node, the work directory with every log). The hosts expect
the PROXY protocol that HAProxy sends them (:mod:`launch.hosts`), so a host's ``/metrics``
is read with ``curl --haproxy-protocol``. SIGHUP rolls the
fleet hosts one at a time as ``./herald hosts up`` does; SIGINT or SIGTERM drains the hosts
and stops everything, also during start-up. A port in use or a setting that cannot work is
refused in one line before anything starts; if the Q&A core exits, everything stops with
exit code 1.

The Redis URL and the Q&A core's data directory are the ones of this topology: an inherited
``HERALD_REDIS_URL`` / ``REDIS_URL``, ``HERALD_QA_DATA_DIR`` or ``DATABASE_URL`` is not used.
Every other ``HERALD_*`` / ``HERALD_QA_*`` setting applies as with ``./herald run``
(docs/configuration.md), including ``HERALD_QA_SOCKET_URL`` / ``HERALD_QA_PUBLIC_BASE_URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis

from herald_contract.config import cannot_bind
from launch.hosts import (
    ROOT,
    Balancer,
    GroupedProgram,
    HostAddress,
    HostsError,
    Topology,
    catch_signals,
    host_addresses,
    http_status,
    serve,
    wait_for,
)
from launch.redis_cluster import ClusterLaunchError, LocalRedisCluster
from launch.settings import build_settings
from launch.system import fleet_environment
from qasite.core.keys import with_secrets
from qasite.core.settings import Settings, SettingsError

PROG = "launch.cluster"
NOT_INHERITED = (
    "HERALD_REDIS_URL",
    "REDIS_URL",
    "HERALD_QA_DATA_DIR",
    "HERALD_QA_DATABASE_URL",
    "DATABASE_URL",
)
"""Settings this launcher decides (the topology's own Redis, data directory and database)."""


class QaCore(GroupedProgram):
    """``python -m qasite serve --workers M`` in its own process group, logging to a file:
    :meth:`start`, :meth:`wait_ready`, :meth:`check`, :meth:`stop`, :meth:`close`."""

    def __init__(
        self, qa: Settings, *, workers: int, env: Mapping[str, str], log_path: Path
    ) -> None:
        super().__init__(env=env, log_path=log_path)
        self.url = f"http://{qa.host}:{qa.port}"
        self.workers = workers

    def migrate(self) -> None:
        """Upgrade the schema once, before any worker starts (several would race)."""
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                [sys.executable, "-m", "qasite", "migrate"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if done.returncode != 0:
            raise HostsError(f"qasite migrate exited with {done.returncode}:\n{self.log_tail()}")

    def start(self) -> None:
        self.launch("qasite", "serve", "--workers", str(self.workers))

    def check(self) -> None:
        """Raise :class:`HostsError` if the Q&A core has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise HostsError(
                f"the Q&A core exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/readyz`` answers 200: its database and the cluster answer."""

        def ready() -> bool:
            self.check()
            return http_status(f"{self.url}/readyz") == 200

        wait_for(ready, "the Q&A core ready", timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait; the group is killed by :meth:`close` if it does not end."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)


def core_environment(
    base: Mapping[str, str], *, data_dir: Path, socket_url: str, database_url: str | None
) -> dict[str, str]:
    """The Q&A core's environment (the fleet's starts from it too): *base* without the
    settings this launcher decides, its data directory and database, and the pages' socket
    URL (HAProxy's) unless ``HERALD_QA_SOCKET_URL`` is set."""
    env = {k: v for k, v in base.items() if k not in NOT_INHERITED}
    env["HERALD_QA_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if not env.get("HERALD_QA_SOCKET_URL"):
        env["HERALD_QA_SOCKET_URL"] = socket_url
    if env.get("HERALD_QA_ENVIRONMENT", "development") == "development":
        env.setdefault("HERALD_QA_DEV_MAILBOX", "true")  # as in embedded mode, unless set false
    return env


def ports_in_use(qa: Settings, balancer: Balancer, hosts: Sequence[HostAddress]) -> str | None:
    """The first port of the topology that cannot be bound, as one line; else None."""
    wanted = [
        (qa.host, qa.port, "--port / HERALD_QA_PORT"),
        (balancer.address, balancer.port, "--socket-port"),
        (balancer.address, balancer.stats_port, "--stats-port"),
        *((h.address, h.port, f"--host-port (host {h.name})") for h in hosts),
        *(
            (h.address, h.health_port, f"--health-port (host {h.name})")
            for h in hosts
            if h.health_port is not None
        ),
    ]
    for host, port, option in wanted:
        if (why := cannot_bind(host, port)) is not None:
            return f"cannot listen on {host}:{port} ({option}): {why}"
    return None


def database_shown(database_url: str | None, data_dir: Path) -> str:
    """The database for the banner: no password."""
    if database_url is None:
        return f"SQLite in {data_dir}"
    parts = urlsplit(database_url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def banner(
    args: argparse.Namespace,
    *,
    qa: QaCore,
    topology: Topology,
    cluster_url: str,
    database: str,
    work_dir: Path,
) -> str:
    stats = f"http://{topology.balancer.address}:{topology.balancer.stats_port}"
    lines = [
        f"Herald cluster up: Redis Cluster of {args.primaries} primaries + "
        f"{args.primaries * args.replicas} replicas, {args.hosts} fleet host(s) x "
        f"{args.workers} worker(s) behind HAProxy, the Q&A core ({args.qa_workers} worker(s))",
        f"  site:          {qa.url}/   (API docs: {qa.url}/docs)",
        f"  websocket:     {topology.url}   (through HAProxy)",
        f"  HAProxy:       {stats}/stats   {stats}/metrics",
        *(  # a host expects the PROXY protocol (HAProxy's send-proxy-v2): curl sends it
            f"  {h.spec.name} metrics:    "
            f"curl --haproxy-protocol http://{h.spec.address}:{h.spec.port}/metrics"
            for h in topology.hosts
        ),
        f"  cluster seed:  {cluster_url}",
        f"  database:      {database}",
        f"  work dir:      {work_dir}   (logs; removed on exit)",
        f"kill -HUP {os.getpid()} rolls the fleet hosts one at a time; "
        "Ctrl-C (or SIGTERM) stops everything.",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--primaries", type=int, default=3, help="Redis Cluster primaries (3)")
    p.add_argument("--replicas", type=int, default=1, help="replicas of each primary (1)")
    p.add_argument("--hosts", type=int, default=2, help="fleet hosts (2)")
    p.add_argument("--workers", type=int, default=2, help="workers per fleet host (2)")
    p.add_argument("--qa-workers", type=int, default=2, help="Q&A core workers (2)")
    p.add_argument("--port", type=int, default=8080, help="the Q&A site's port (8080)")
    p.add_argument("--socket-port", type=int, default=8000, help="HAProxy's websocket port")
    p.add_argument("--host-port", type=int, default=8000, help="each host's port on 127.0.0.x")
    p.add_argument(
        "--health-port",
        type=int,
        default=8001,
        help="each host's /healthz and /readyz on 127.0.0.x, where HAProxy checks (8001; 0: off)",
    )
    p.add_argument("--stats-port", type=int, default=8404, help="HAProxy stats and /metrics")
    p.add_argument("--database-url", help="the Q&A core's database (default: SQLite, work dir)")
    return p


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _stopping(requests: list[int]) -> bool:
    return any(signum != signal.SIGHUP for signum in requests)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for option in ("primaries", "hosts", "workers", "qa_workers"):
        if getattr(args, option) < 1:
            return _fail(f"--{option.replace('_', '-')} must be at least 1", 2)
    if args.replicas < 0:
        return _fail("--replicas must be 0 or more", 2)
    requests = catch_signals()
    work_dir = Path(tempfile.mkdtemp(prefix="herald-cluster-"))
    try:
        return _run(args, requests, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _run(args: argparse.Namespace, requests: list[int], work_dir: Path) -> int:
    balancer = Balancer("127.0.0.1", args.socket_port, args.stats_port, work_dir)
    addresses = host_addresses(args.hosts, args.host_port, args.health_port or None)
    data_dir = work_dir / "qa-data"
    env = core_environment(
        os.environ,
        data_dir=data_dir,
        socket_url=f"ws://{balancer.address}:{balancer.port}/ws",
        database_url=args.database_url,
    )
    try:
        qa_settings, _ = build_settings(env, port=str(args.port))
    except SettingsError as exc:
        return _fail(str(exc), 2)
    if (taken := ports_in_use(qa_settings, balancer, addresses)) is not None:
        return _fail(taken, 1)
    env["HERALD_QA_PORT"] = str(qa_settings.port)
    env["HERALD_QA_PUBLIC_BASE_URL"] = qa_settings.public_base_url
    cluster: LocalRedisCluster | None = None
    topology: Topology | None = None
    qa: QaCore | None = None
    try:
        cluster = LocalRedisCluster.launch(
            work_dir / "redis", primaries=args.primaries, replicas=args.replicas
        )
        if _stopping(requests):
            return 0
        env["HERALD_REDIS_URL"] = cluster.url
        qa = QaCore(qa_settings, workers=args.qa_workers, env=env, log_path=work_dir / "qa.log")
        qa.migrate()
        # The development key pair exists before the fleet is pointed at its public key.
        fleet_env = fleet_environment(env, with_secrets(qa_settings))
        topology = Topology(addresses, balancer, workers=args.workers, env=fleet_env)
        topology.start()
        if _stopping(requests):
            return _stop(topology, qa)
        qa.start()
        qa.wait_ready()
        print(
            banner(
                args,
                qa=qa,
                topology=topology,
                cluster_url=cluster.url,
                database=database_shown(args.database_url, data_dir),
                work_dir=work_dir,
            ),
            flush=True,
        )
        serve(topology, requests, check=qa.check)
        return _stop(topology, qa)
    except (
        HostsError,
        ClusterLaunchError,
        redis.RedisError,
        OSError,
        subprocess.SubprocessError,
    ) as exc:
        return _fail(str(exc), 1)
    finally:
        if qa is not None:
            qa.close()
        if topology is not None:
            topology.close()
        if cluster is not None:
            cluster.close()


def _stop(topology: Topology, qa: QaCore) -> int:
    """Drain the hosts (their clients are closed with a reconnect hint), then the Q&A core."""
    for host in topology.hosts:
        host.stop()
    qa.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
