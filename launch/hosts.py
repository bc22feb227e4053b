"""Several socket fleet "hosts" behind HAProxy on one machine, and a rolling deploy.

    python -m launch.hosts --redis-url redis://127.0.0.1:6379/0 [--hosts 2] [--workers 2]
        [--port 8000] [--host-port 8000] [--health-port 8001] [--stats-port 8404]

Each host is its own supervisor (``python -m socketsrv --workers W``) bound to its own
loopback address (127.0.0.2, 127.0.0.3, ...), all on one Redis; HAProxy listens on
127.0.0.1 in front of them with the configuration rendered from ``deploy/haproxy.cfg.template``
(deploy/README.md). SIGHUP rolls every host, one at a time; SIGINT or SIGTERM stops
everything (the hosts drain).

HAProxy passes each client's address with the PROXY protocol (``send-proxy-v2``), so the
hosts run with ``HERALD_PROXY_PROTOCOL=true`` and count the client's address in their
per-address limits, never the balancer's. A host then drops a connection that does not start
with a PROXY header: whatever else asks a host directly (its ``/readyz`` here, ``/metrics``
by hand: ``curl --haproxy-protocol``) sends one first (:func:`proxied_http_get`).

A rolling deploy of one host (:func:`roll_host`) tells the load balancer first: the fleet
closes its listening socket at the same moment its ``/readyz`` turns 503, so a health check
cannot learn of a drain before the host stops accepting. The deploy therefore puts the server
in HAProxy's DRAIN state through the runtime API and waits until ``show stat`` reports it,
then sends SIGTERM (the host closes its sockets in batches with close 4000 and a reconnect
hint; the clients reconnect through HAProxy to the other hosts), starts the host again, waits
for its ``/readyz``, puts it back in READY and waits until HAProxy's own checks report it UP.
The health checks on ``/readyz`` remain what takes a crashed or unready host out. They go to
each host's health listener (``--health-port``, 8001 by default; ``HERALD_HEALTH_PORT`` on the
host), which a thread answers beside the event loop, so a reconnect storm on the public port
cannot delay them past HAProxy's check timeout and mark a busy, healthy host down.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import FrameType

from socketsrv.proxy_protocol import V2_SIGNATURE

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "haproxy.cfg.template"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
BACKEND = "herald_fleet"
MAX_CONNECTIONS = 9800
"""HAProxy holds two sockets per client (client and server side) and the open-file limit is
20,000 per process: 9,800 clients stay under it with room for checks and the stats port."""


PROXY_V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"
"""A PROXY protocol v2 header with the LOCAL command (version 2, no address family, no
addresses): what HAProxy's own health checks send; the host keeps the TCP peer's address."""


class HostsError(RuntimeError):
    """A host or HAProxy did not start or did not reach the state asked; the message says."""


@dataclass(frozen=True)
class HealthChecks:
    """HAProxy's health-check pace: every ``inter_ms``, DOWN after ``fall`` failures in a
    row, UP after ``rise`` successes. :data:`PRODUCTION_CHECKS` and :data:`FAST_CHECKS`."""

    inter_ms: int
    fall: int
    rise: int


PRODUCTION_CHECKS = HealthChecks(inter_ms=2000, fall=3, rise=2)
FAST_CHECKS = HealthChecks(inter_ms=100, fall=2, rise=1)


@dataclass(frozen=True)
class HostAddress:
    """One fleet host: clients reach ``address:port``; with *health_port* the host also
    answers ``/healthz`` and ``/readyz`` on ``address:health_port`` (its own listener, answered
    by a thread: socketsrv/health.py) and HAProxy checks it there, so a handshake storm on the
    public port cannot make the checks time out and take a busy, healthy host out."""

    name: str
    address: str
    port: int
    health_port: int | None = None

    @property
    def server_line(self) -> str:
        """This host's ``server`` line in the HAProxy backend. Checks on the health port go
        without the PROXY header (``no-check-send-proxy``): that listener is internal."""
        checks = "check"
        if self.health_port is not None:
            checks += f" port {self.health_port} no-check-send-proxy"
        return f"    server {self.name} {self.address}:{self.port} {checks}"


@dataclass(frozen=True)
class Balancer:
    """Where HAProxy listens: clients at ``address:port``, stats and /metrics at
    ``address:stats_port``; ``run_dir`` holds its pid file and admin socket."""

    address: str
    port: int
    stats_port: int
    run_dir: Path

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "admin.sock"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "haproxy.cfg"


def render_haproxy_config(
    hosts: Sequence[HostAddress],
    balancer: Balancer,
    *,
    checks: HealthChecks = PRODUCTION_CHECKS,
    max_connections: int = MAX_CONNECTIONS,
    template: str | None = None,
) -> str:
    """``deploy/haproxy.cfg.template`` filled in for *hosts* behind *balancer*."""
    text = TEMPLATE.read_text() if template is None else template
    servers = "\n".join(h.server_line for h in hosts)
    return Template(text).substitute(
        global_maxconn=max_connections,
        frontend_maxconn=max_connections,
        server_maxconn=max_connections,
        run_dir=balancer.run_dir,
        hard_stop_after="35s",  # the fleet's drain_timeout_s (30 s) and a margin
        check_inter=f"{checks.inter_ms}ms",
        check_fall=checks.fall,
        check_rise=checks.rise,
        frontend_address=balancer.address,
        frontend_port=balancer.port,
        stats_address=balancer.address,
        stats_port=balancer.stats_port,
        servers=servers,
    )


def render_nginx_config(
    hosts: Sequence[HostAddress],
    balancer: Balancer,
    *,
    max_connections: int = MAX_CONNECTIONS,
    template: str | None = None,
) -> str:
    """``deploy/nginx.conf.template`` filled in: the alternative to HAProxy (no stats port;
    passive health checks only, deploy/README.md)."""
    text = NGINX_TEMPLATE.read_text() if template is None else template
    servers = "\n".join(
        f"        server {h.address}:{h.port} max_fails=2 fail_timeout=5s;" for h in hosts
    )
    return Template(text).substitute(
        run_dir=balancer.run_dir,
        max_connections=max_connections,
        frontend_address=balancer.address,
        frontend_port=balancer.port,
        servers=servers,
    )


def haproxy_binary() -> str:
    """The path of ``haproxy``; raises :class:`HostsError` naming the package when missing."""
    binary = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
    )
    if binary is None:
        raise HostsError("haproxy is not installed (apt-get install haproxy, or ./herald test)")
    return binary


def check_config(path: Path) -> str:
    """``haproxy -c -f path``: its output; raises :class:`HostsError` when the file is wrong."""
    done = subprocess.run(  # noqa: S603 - the haproxy binary on PATH, our own file
        [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise HostsError(f"haproxy -c -f {path} failed:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def http_status(url: str, timeout_s: float = 2.0) -> int:
    """The HTTP status of a GET of *url*; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class _ProxiedConnection(http.client.HTTPConnection):
    """HTTP/1.1 on a connection that starts with :data:`PROXY_V2_LOCAL`."""

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.sendall(PROXY_V2_LOCAL)


def proxied_http_get(address: str, port: int, path: str, timeout_s: float = 2.0) -> int:
    """The HTTP status of a GET of *path* from a host that expects the PROXY protocol (a
    LOCAL header first, as HAProxy's checks send); 0 when nothing answers."""
    connection = _ProxiedConnection(address, port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return int(response.status)
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll *condition* until it holds; raise :class:`HostsError` naming *what* after
    *timeout_s*."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise HostsError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)


class GroupedProgram:
    """One of our programs (``python -m <module> ...``) in its own process group, logging to
    *log_path*: :meth:`launch` starts it, :meth:`close` kills the whole group (also workers a
    dead supervisor left), :meth:`log_tail` shows the end of its log."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self, *args: str) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", *args],
                cwd=ROOT, env={**self.env, "PYTHONUNBUFFERED": "1"},
                stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: close() reaches its workers too
            )  # fmt: skip

    def close(self) -> None:
        """Kill the whole process group (teardown; also workers a dead supervisor left)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


class FleetHost(GroupedProgram):
    """One host: ``python -m socketsrv --host ADDRESS --port PORT --workers W`` in its own
    process group. :meth:`start`, :meth:`wait_ready`, :meth:`stop` (a drain), :meth:`close`.

    *proxy_protocol*: the host expects a PROXY header on every connection (behind HAProxy's
    ``send-proxy-v2``): it runs with ``HERALD_PROXY_PROTOCOL=true`` and :meth:`readyz` sends a
    LOCAL header first."""

    def __init__(
        self,
        spec: HostAddress,
        *,
        workers: int,
        env: Mapping[str, str],
        log_dir: Path,
        proxy_protocol: bool = False,
    ) -> None:
        if proxy_protocol:
            env = {**env, "HERALD_PROXY_PROTOCOL": "true"}
        if spec.health_port is not None:
            env = {
                **env,
                "HERALD_HEALTH_HOST": spec.address,
                "HERALD_HEALTH_PORT": str(spec.health_port),
            }
        super().__init__(env=env, log_path=log_dir / f"{spec.name}.log")
        self.spec = spec
        self.workers = workers
        self.proxy_protocol = proxy_protocol
        self.starts = 0

    def start(self) -> None:
        if self.running:
            raise HostsError(f"host {self.spec.name} is already running")
        self.launch(
            "socketsrv", "--host", self.spec.address,
            "--port", str(self.spec.port), "--workers", str(self.workers),
        )  # fmt: skip
        self.starts += 1

    def readyz(self) -> int:
        """The status of this host's ``/readyz`` where HAProxy asks it (0: no answer)."""
        if self.spec.health_port is not None:
            return http_status(f"http://{self.spec.address}:{self.spec.health_port}/readyz")
        if self.proxy_protocol:
            return proxied_http_get(self.spec.address, self.spec.port, "/readyz")
        return http_status(f"http://{self.spec.address}:{self.spec.port}/readyz")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/readyz`` answers 200 several times in a row (each worker answers some)."""
        in_a_row = 0

        def ready() -> bool:
            nonlocal in_a_row
            if not self.running:
                raise HostsError(f"host {self.spec.name} exited:\n{self.log_tail()}")
            in_a_row = in_a_row + 1 if self.readyz() == 200 else 0
            return in_a_row >= 4 * self.workers

        wait_for(ready, f"host {self.spec.name} ready", timeout_s)

    def stop(self, timeout_s: float = 45.0) -> int:
        """SIGTERM (the fleet drains) and wait for the supervisor; its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            raise HostsError(f"host {self.spec.name} did not stop within {timeout_s} s") from None


class Haproxy:
    """HAProxy in the foreground on a rendered configuration, and its runtime API (the admin
    stats socket: ``show stat``, ``set server``)."""

    def __init__(self, config: str, balancer: Balancer) -> None:
        self.balancer = balancer
        self.config = config
        self.log_path = balancer.run_dir / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Write the configuration, check it, start HAProxy; return once its admin socket and
        its frontend answer."""
        self.balancer.config_path.write_text(self.config)
        check_config(self.balancer.config_path)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - haproxy on our rendered file
                [haproxy_binary(), "-db", "-f", str(self.balancer.config_path)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise HostsError(f"haproxy exited:\n{self.log_tail()}")
            try:
                self.command("show info")
            except OSError:
                return False
            return True

        wait_for(up, "haproxy's admin socket", timeout_s)

    def command(self, line: str) -> str:
        """One runtime API command on the admin socket; its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(self.balancer.admin_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the fleet's backend: server name -> CSV fields (status, scur,
        stot, ...)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(text.splitlines())
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def status(self, server: str) -> str:
        return self.server_stats()[server]["status"]

    def set_state(self, server: str, state: str) -> None:
        """``set server herald_fleet/<server> state ready|drain|maint``."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}").strip()
        if answer:
            raise HostsError(f"set server {server} state {state}: {answer}")

    def wait_status(self, server: str, status: str, timeout_s: float = 30.0) -> None:
        wait_for(lambda: self.status(server) == status, f"haproxy: {server} {status}", timeout_s)

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def roll_host(
    host: FleetHost,
    lb: Haproxy,
    *,
    ready_timeout_s: float = 60.0,
    between: Callable[[str], None] | None = None,
) -> None:
    """Drain *host* at the load balancer, then at the host; restart it; put it back.

    *between* is called with ``"drained"`` once HAProxy reports the server in DRAIN (before the
    SIGTERM) and with ``"restarted"`` once the new host answers ready (before HAProxy sends it
    anyone): the points where a test or an operator looks.
    """
    name = host.spec.name
    lb.set_state(name, "drain")
    lb.wait_status(name, "DRAIN")
    if between is not None:
        between("drained")
    code = host.stop()
    if code != 0:
        raise HostsError(f"host {name} exited with {code} while draining:\n{host.log_tail()}")
    host.start()
    host.wait_ready(ready_timeout_s)
    if between is not None:
        between("restarted")
    lb.set_state(name, "ready")
    lb.wait_status(name, "UP", ready_timeout_s)


def rolling_deploy(
    hosts: Sequence[FleetHost],
    lb: Haproxy,
    *,
    between: Callable[[str, str], None] | None = None,
) -> None:
    """:func:`roll_host` on each host in turn: never more than one host out of rotation."""
    for host in hosts:
        hook = None if between is None else (lambda step, n=host.spec.name: between(n, step))
        roll_host(host, lb, between=hook)


def host_addresses(count: int, port: int, health_port: int | None = None) -> list[HostAddress]:
    """Hosts ``h1``.. on 127.0.0.2, 127.0.0.3, ... (127.0.0.1 is the load balancer's), each
    with its health listener on *health_port* (None: checks on the public port)."""
    return [HostAddress(f"h{i + 1}", f"127.0.0.{i + 2}", port, health_port) for i in range(count)]


class Topology:
    """N hosts and HAProxy in front of them, started and stopped together."""

    def __init__(
        self,
        hosts: Sequence[HostAddress],
        balancer: Balancer,
        *,
        workers: int,
        env: Mapping[str, str],
        checks: HealthChecks = PRODUCTION_CHECKS,
    ) -> None:
        self.balancer = balancer
        # HAProxy sends every host a PROXY v2 header naming the client
        # (deploy/haproxy.cfg.template: send-proxy-v2, check-send-proxy).
        self.hosts = [
            FleetHost(h, workers=workers, env=env, log_dir=balancer.run_dir, proxy_protocol=True)
            for h in hosts
        ]
        self.lb = Haproxy(render_haproxy_config(hosts, balancer, checks=checks), balancer)

    @property
    def url(self) -> str:
        return f"ws://{self.balancer.address}:{self.balancer.port}/ws"

    def start(self, timeout_s: float = 60.0) -> None:
        for host in self.hosts:
            host.start()
        for host in self.hosts:
            host.wait_ready(timeout_s)
        self.lb.start()
        for host in self.hosts:
            self.lb.wait_status(host.spec.name, "UP", timeout_s)

    def roll(self, between: Callable[[str, str], None] | None = None) -> None:
        rolling_deploy(self.hosts, self.lb, between=between)

    def close(self) -> None:
        """Stop HAProxy and kill every host's process group (also after a failure)."""
        self.lb.close()
        for host in self.hosts:
            host.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m launch.hosts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--redis-url", help="the one Redis (default: HERALD_REDIS_URL / REDIS_URL)")
    p.add_argument("--hosts", type=int, default=2, help="fleet hosts (default 2)")
    p.add_argument("--workers", type=int, default=2, help="workers per host (default 2)")
    p.add_argument("--port", type=int, default=8000, help="HAProxy's port on 127.0.0.1")
    p.add_argument("--host-port", type=int, default=8000, help="each host's port on 127.0.0.x")
    p.add_argument(
        "--health-port",
        type=int,
        default=8001,
        help="each host's /healthz and /readyz listener on 127.0.0.x, where HAProxy checks"
        " (default 8001; 0: check on --host-port)",
    )
    p.add_argument("--stats-port", type=int, default=8404, help="HAProxy stats and /metrics")
    return p


def catch_signals() -> list[int]:
    """From now on SIGINT, SIGTERM and SIGHUP are appended to the returned list instead of
    acting: :func:`serve` (and a launcher between its start-up steps) reads it."""
    requests: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requests.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return requests


def serve(
    topology: Topology, requests: list[int], *, check: Callable[[], None] | None = None
) -> None:
    """Until SIGINT or SIGTERM arrives in *requests* (:func:`catch_signals`): each SIGHUP
    rolls the hosts one at a time, its steps printed. *check*, called every 0.2 s, may raise
    :class:`HostsError` (a launcher's other process exited)."""
    while True:
        while not requests:
            if check is not None:
                check()
            time.sleep(0.2)
        if requests.pop(0) != signal.SIGHUP:
            return
        print("rolling deploy: one host at a time", flush=True)
        topology.roll(lambda name, step: print(f"  {name}: {step}", flush=True))
        print("rolling deploy done", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    redis_url = args.redis_url or env.get("HERALD_REDIS_URL") or env.get("REDIS_URL")
    if not redis_url:
        print("launch.hosts: several hosts need one Redis: set --redis-url", file=sys.stderr)
        return 2
    env["HERALD_REDIS_URL"] = redis_url
    run_dir = Path(tempfile.mkdtemp(prefix="herald-hosts-"))
    balancer = Balancer("127.0.0.1", args.port, args.stats_port, run_dir)
    topology = Topology(
        host_addresses(args.hosts, args.host_port, args.health_port or None),
        balancer,
        workers=args.workers,
        env=env,
    )
    requests = catch_signals()
    try:
        topology.start()
        print(
            f"Herald: {args.hosts} host(s) x {args.workers} worker(s) behind HAProxy\n"
            f"  websocket:  {topology.url}\n"
            f"  stats:      http://127.0.0.1:{args.stats_port}/stats   /metrics\n"
            f"  logs:       {run_dir}\n"
            f"  kill -HUP {os.getpid()} rolls the hosts one at a time",
            flush=True,
        )
        serve(topology, requests)
        for host in topology.hosts:
            host.stop()
        return 0
    except HostsError as exc:
        print(f"launch.hosts: {exc}", file=sys.stderr)
        return 1
    finally:
        topology.close()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
