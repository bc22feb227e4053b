"""``python -m launch.cluster`` (``./herald cluster up``): a 3-primary + 3-replica Redis
Cluster, two fleet hosts behind HAProxy and the Q&A core, as one command.

The launcher runs as a real subprocess on free ports: once its banner is out, a websocket
client subscribed through HAProxy receives a question asked on the Q&A core's HTTP API
(outbox -> relay -> cluster -> host -> HAProxy), and after SIGTERM no process it started
is left (every descendant seen while it ran is gone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from launch.hosts import proxied_http_get
from tests.launch.test_embedded import login
from tests.support.client import HeraldTestClient
from tests.support.commands import ROOT, clean_env, port_in_use, run_command
from tests.support.haproxy import require_haproxy
from tests.support.redis_server import free_port
from tests.support.waiting import eventually

READY_LINE = "Ctrl-C (or SIGTERM) stops everything."
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 45.0


def require_redis_cluster_binaries() -> None:
    """redis-server and redis-cli: missing fails under CI (``./herald test`` installs them)
    and skips elsewhere, as :func:`require_haproxy` does."""
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def port_free_on_both(*addresses: str) -> int:
    """A port free on every one of *addresses* (the hosts share one port on 127.0.0.x)."""
    for _ in range(50):
        port = free_port(addresses[0])
        if all(_bindable(address, port) for address in addresses[1:]):
            return port
    raise AssertionError(f"no port free on all of {addresses}")


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


# --- the process tree, from /proc ------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of *pid*, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of *root*: pid -> its start time (to tell a reused pid)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[0], []).append(int(entry))
            starts[int(entry)] = stat[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def still_running(processes: dict[int, int]) -> list[int]:
    """The pids of *processes* that still run (the same process, not a zombie)."""
    alive = []
    for pid, start in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == start and stat[1] != "Z":
            alive.append(pid)
    return alive


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return "?"


# --- the launcher ----------------------------------------------------------------------------


@dataclass
class Launched:
    process: subprocess.Popen[str]
    site: str
    websocket: str
    stats: str
    hosts: list[str]
    log: Path
    lines: list[str] = field(default_factory=list)
    seen: dict[int, int] = field(default_factory=dict)

    def output(self) -> str:
        stderr = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(self.lines) + "\n--- stderr\n" + stderr[-4000:]

    def read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self) -> None:
        """Until the banner is out; every process the launcher starts meanwhile is recorded
        in :attr:`seen`, so a failed start still leaves nothing behind at teardown."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(line.endswith(READY_LINE) for line in self.lines):
            self.seen.update(descendants(self.process.pid))
            assert self.process.poll() is None, f"launch.cluster exited:\n{self.output()}"
            assert time.monotonic() < deadline, (
                f"no banner in {START_TIMEOUT_S} s:\n{self.output()}"
            )
            time.sleep(0.2)


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Launched]:
    require_haproxy()
    require_redis_cluster_binaries()
    site, socket_port, stats = free_port(), free_port(), free_port()
    host_port = port_free_on_both("127.0.0.2", "127.0.0.3")
    env = clean_env(
        HERALD_QA_RELAY_POLL_INTERVAL_S="0.1",
        HERALD_QA_ARGON2_TIME_COST="1",
        HERALD_QA_ARGON2_MEMORY_KIB="64",
    )
    log = tmp_path / "launch-cluster.stderr"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "launch.cluster", "--primaries", "3", "--replicas", "1",
             "--hosts", "2", "--workers", "1", "--qa-workers", "1",
             "--port", str(site), "--socket-port", str(socket_port),
             "--stats-port", str(stats), "--host-port", str(host_port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
            start_new_session=True,
        )  # fmt: skip
    running = Launched(
        process,
        site=f"http://127.0.0.1:{site}",
        websocket=f"ws://127.0.0.1:{socket_port}/ws",
        stats=f"http://127.0.0.1:{stats}",
        hosts=[f"http://127.0.0.{i}:{host_port}" for i in (2, 3)],
        log=log,
    )
    reader = threading.Thread(target=running.read_stdout, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        # Whatever the test did: SIGTERM (the launcher stops what it started and removes its
        # work directory), then SIGKILL of its group and of anything it started in a group of
        # its own (hosts, HAProxy, the Q&A core) that is still there.
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pid in still_running(running.seen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.redis
@pytest.mark.timeout(180)
async def test_cluster_up_carries_a_question_to_a_websocket_through_haproxy_and_stops_clean(
    launched: Launched,
) -> None:
    launched.wait_ready()
    banner = "\n".join(launched.lines)
    for url in (launched.site, launched.websocket, f"{launched.stats}/stats", *launched.hosts):
        assert url in banner, (url, banner)
    for url in launched.hosts:  # the hosts expect HAProxy's PROXY header: so does the banner
        assert f"curl --haproxy-protocol {url}/metrics" in banner, banner
        address, port = url.removeprefix("http://").split(":")
        assert proxied_http_get(address, int(port), "/metrics") == 200
    assert "redis+cluster://127.0.0.1:" in banner
    assert "3 primaries + 3 replicas, 2 fleet host(s)" in banner

    now = descendants(launched.process.pid)
    launched.seen.update(now)
    commands = [command_line(pid) for pid in now]
    # 6 Redis nodes, 2 hosts (supervisor and worker each), HAProxy, the Q&A core.
    assert sum("redis-server" in c for c in commands) == 6, commands
    assert sum("-m socketsrv" in c for c in commands) >= 2, commands
    assert sum("haproxy" in c for c in commands) == 1, commands
    assert sum("qasite serve" in c for c in commands) >= 1, commands

    client = HeraldTestClient(launched.websocket)
    try:
        await client.open()
        assert (await client.subscribe("questions:new"))["type"] == "reply"
        async with httpx.AsyncClient(base_url=launched.site, timeout=30) as http:
            _, headers = await login(http, "asker@example.org")
            body = {"title": "Does the cluster carry it?", "body": "b", "tags": ["herald"]}
            asked = await http.post("/api/questions", json=body, headers=headers)
            assert asked.status_code == 201, asked.text
            # The site's pages connect through HAProxy.
            page = (await http.get("/")).text
            assert launched.websocket in page
        await eventually(lambda: bool(client.data("questions:new")), timeout_s=30)
        assert client.data("questions:new")[0]["id"] == asked.json()["id"]
    finally:
        await client.close()

    launched.process.send_signal(signal.SIGTERM)
    assert launched.process.wait(timeout=STOP_TIMEOUT_S) == 0, launched.output()
    await eventually(lambda: not still_running(launched.seen), timeout_s=15)


def test_its_help_prints_the_usage_and_starts_nothing() -> None:
    ended = run_command(["launch.cluster", "--help"], clean_env(), timeout_s=30)
    assert ended.returncode == 0
    assert ended.stdout.startswith("usage: python -m launch.cluster")
    assert "--replicas" in ended.stdout and "--database-url" in ended.stdout
    assert ended.stderr == ""


def test_herald_cluster_up_help_prints_the_usage_and_installs_nothing(tmp_path: Path) -> None:
    script = tmp_path / "herald"  # a copy: its own root has no .venv to create or reuse
    shutil.copy2(ROOT / "herald", script)
    ended = run_command([str(script), "cluster", "up", "--help"], clean_env(), cwd=tmp_path)
    assert ended.returncode == 0, ended.stderr
    assert "./herald cluster up [options]" in ended.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["herald"]


def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    with port_in_use() as port:
        others = ["--port", str(free_port()), "--stats-port", str(free_port())]
        ended = run_command(["launch.cluster", "--socket-port", str(port), *others], clean_env())
    assert ended.returncode == 1
    assert ended.last_line == (
        f"launch.cluster: cannot listen on 127.0.0.1:{port} (--socket-port): Address already in use"
    ), ended.stderr
