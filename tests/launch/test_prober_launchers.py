"""``./herald run`` starts the prober beside the fleet (launch/embedded.py, launch/system.py):
its probes go round and its /metrics shows them, in embedded mode and over Redis."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.commands import ROOT, clean_env
from tests.support.processes import stop_group
from tests.support.redis_server import RedisServer, free_port

FAST_QA = {
    "HERALD_QA_ARGON2_TIME_COST": "1",
    "HERALD_QA_ARGON2_MEMORY_KIB": "64",
    "HERALD_PROBE_INTERVAL_S": "0.1",
}


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return ""


def value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


def wait_for_probes(process: subprocess.Popen[bytes], metrics_port: int, count: int) -> str:
    """The prober's /metrics once *count* probes were timed and its 3 connections are live
    together (one may still be connecting when the others have timed a few probes)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the launcher exited with {process.returncode}"
        text = scrape(metrics_port)
        timed = value(text, "herald_probe_latency_seconds_count") >= count
        if timed and value(text, 'herald_probe_connections{state="live"}') == 3:
            return text
        time.sleep(0.1)
    raise AssertionError(
        f"fewer than {count} probes timed or 3 connections live within 90 s:\n"
        f"{scrape(metrics_port)}"
    )


@contextmanager
def launched(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            stop_group(process, timeout_s=30)


def test_embedded_mode_runs_a_prober_whose_probes_reach_the_worker(tmp_path: Path) -> None:
    metrics_port = free_port()
    env = clean_env(
        HERALD_QA_DATA_DIR=str(tmp_path / "data"),
        HERALD_PROBE_METRICS_PORT=str(metrics_port),
        **FAST_QA,
    )
    args = ["launch.embedded", "--port", str(free_port()), "--socket-port", "0"]
    with launched(args, env, tmp_path / "embedded.log") as process:
        text = wait_for_probes(process, metrics_port, count=6)
    assert value(text, 'herald_probe_missed_total{reason="publish_failed"}') == 0


def test_the_system_over_redis_runs_a_prober_pointed_at_the_fleet(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = clean_env(
        HERALD_REDIS_URL=redis_server.url,
        HERALD_QA_DATA_DIR=str(tmp_path / "data"),
        HERALD_PROBE_METRICS_PORT=str(metrics_port),
        **FAST_QA,
    )
    args = ["launch.system", "--workers", "1", "--qa-workers", "1"]
    args += ["--port", str(free_port()), "--socket-port", str(free_port())]
    with launched(args, env, tmp_path / "system.log") as process:
        text = wait_for_probes(process, metrics_port, count=6)
    assert value(text, "herald_probe_sent_total") >= 2


def test_no_prober_starts_with_no_prober(tmp_path: Path) -> None:
    metrics_port = free_port()
    env = clean_env(
        HERALD_QA_DATA_DIR=str(tmp_path / "data"),
        HERALD_PROBE_METRICS_PORT=str(metrics_port),
        **FAST_QA,
    )
    socket_port = free_port()
    args = ["launch.embedded", "--port", str(free_port()), "--socket-port", str(socket_port)]
    with launched([*args, "--no-prober"], env, tmp_path / "embedded.log") as process:
        deadline = time.monotonic() + 60
        while scrape(socket_port) == "":  # the worker's /metrics: the system is up
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert scrape(metrics_port) == ""
