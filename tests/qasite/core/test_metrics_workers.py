"""``herald-qa serve --workers 2``: every scrape of ``/metrics`` reports the whole service.

The workers share one listening socket and the kernel hands each connection to any of them,
with no promise of a spread (under load one worker may take them all). In multiprocess mode
(qasite/core/metrics.py) the one that answers a scrape sums what every worker counted. To
have a chosen worker answer, the tests stop the others (SIGSTOP) for a few requests: a
stopped process cannot accept, so the shared queue is drained by the chosen one alone. The
service runs as a subprocess on a copy of the migrated SQLite template; which worker held a
connection is read from /proc (Linux), so each test checks that the chosen worker answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qasite.core.db import Database
from qasite.core.metrics import build_metrics, multiprocess_dir, render
from qasite.core.settings import Settings
from qasite.domain.models import OutboxEvent
from tests.support.processes import stop_group
from tests.support.redis_server import free_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)"),
]

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 30.0
OLD_EVENT_AGE_S = 600.0


@dataclass
class Service:
    """``python -m qasite serve --workers 2`` on a free port."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tmp_dir: Path
    """The service's TMPDIR: where the serve command creates its metrics directory."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def get(self, path: str) -> tuple[int, bytes, int]:
        """GET *path* on a new connection: status, body and the pid of the worker that
        answered. The request is held back by its last line until a worker has accepted the
        connection and been found holding it (after the answer, it may have closed it)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            client_port = int(sock.getsockname()[1])
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
            )
            deadline = time.monotonic() + 60  # a busy worker accepts late on a loaded machine
            while True:
                try:
                    holder = self.worker_holding(client_port)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)  # still in the accept queue
            sock.sendall(b"\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response.status, response.read(), holder

    def scrape(self) -> bytes:
        status, body, _ = self.get("/metrics")
        assert status == 200, body
        return body

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [
            int(child)
            for child in children
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
        ]

    def worker_holding(self, client_port: int) -> int:
        """The worker whose socket is connected to our *client_port*."""
        inode = _server_socket_inode(self.port, client_port)
        for pid in self.worker_pids():
            with contextlib.suppress(FileNotFoundError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        if os.readlink(fd) == f"socket:[{inode}]":
                            return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")


def _server_socket_inode(server_port: int, client_port: int) -> str:
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and (
                int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return inode
    raise AssertionError(f"no server socket for the connection from port {client_port}")


def sample(metrics_text: bytes, name: str, **labels: str) -> list[float]:
    """The values of *name*'s series whose labels include *labels*."""
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb"(\{.*\})? (\S+)$", re.M)
    wanted = [f'{key}="{value}"'.encode() for key, value in labels.items()]
    return [
        float(value)
        for label_text, value in pattern.findall(metrics_text)
        if all(label in label_text for label in wanted)
    ]


def start_service(tmp_path: Path, sqlite_template: Path, **env: str) -> Service:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(sqlite_template, data_dir / "qa.sqlite3")
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    port = free_port()
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HERALD_QA_")
        and key not in {"DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}
    }
    log_path = tmp_path / "qa.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "qasite", "serve", "--workers", "2"],
            cwd=ROOT,
            env={
                **inherited,
                "PYTHONUNBUFFERED": "1",
                "TMPDIR": str(tmp_dir),
                "HERALD_QA_DATA_DIR": str(data_dir),
                "HERALD_QA_PORT": str(port),
                "HERALD_QA_RELAY_POLL_INTERVAL_S": "0.05",
                "HERALD_QA_RELAY_RETRY_MAX_S": "0.2",
                # only_worker stops the other workers with SIGSTOP for as long as its block
                # takes on a loaded machine: uvicorn's supervisor must not replace them meanwhile
                # (it did after 5 s: ProcessLookupError on the SIGCONT).
                "HERALD_QA_WORKER_HEALTHCHECK_TIMEOUT_S": "300",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(process, port, log_path, tmp_dir)
    try:
        wait_until(lambda: _answers_health(service) and len(service.worker_pids()) == 2, service)
    except BaseException:
        stop(service)
        raise
    return service


def _answers_health(service: Service) -> bool:
    try:
        status, _, _ = service.get("/healthz")
    except (OSError, AssertionError):
        return False
    return status == 200


def wait_until(
    ready: Callable[[], bool], service: Service, timeout_s: float = START_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(f"the service exited:\n{service.log()}")
        if ready():
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout_s}s:\n{service.log()}")


def stop(service: Service) -> int:
    """SIGTERM, wait; kill the process group if it does not exit. Returns the exit code."""
    return stop_group(service.process, timeout_s=15)


@pytest.fixture
def service(tmp_path: Path, sqlite_template: Path) -> Iterator[Service]:
    running = start_service(tmp_path, sqlite_template)
    yield running
    stop(running)


MISSING_QUESTION = "/api/questions/999999"
MISSING_QUESTION_SERIES = {"route": "/api/questions/{question_id}", "status": "404"}


def _state(pid: int) -> str:
    """The process state letter of *pid* (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def only_worker(service: Service, pid: int) -> Iterator[None]:
    """While the block runs, worker *pid* alone accepts connections: the others are stopped.

    Each other worker is known stopped (state ``T``) before the block starts, and continued
    when it ends, whatever happens in it.
    """
    others = [other for other in service.worker_pids() if other != pid]
    try:
        for other in others:
            os.kill(other, signal.SIGSTOP)
        for other in others:
            wait_until(lambda other=other: _state(other) == "T", service)
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


REQUESTS_PER_WORKER = 5


def requests_answered_by_each_worker(service: Service) -> int:
    """GET a missing question :data:`REQUESTS_PER_WORKER` times from each worker in turn;
    returns how many requests were made."""
    made = 0
    for pid in service.worker_pids():
        with only_worker(service, pid):
            for _ in range(REQUESTS_PER_WORKER):
                status, _, holder = service.get(MISSING_QUESTION)
                assert (status, holder) == (404, pid)
                made += 1
    return made


def missing_question_requests(text: bytes) -> list[float]:
    return sample(text, "herald_qa_http_requests_total", **MISSING_QUESTION_SERIES)


def wait_until_counted(service: Service, made: int) -> None:
    """A worker counts a request just after sending its answer: wait for the last ones."""
    wait_until(lambda: missing_question_requests(service.scrape()) == [made], service)


def test_every_scrape_reports_the_requests_answered_by_both_workers(service: Service) -> None:
    made = requests_answered_by_each_worker(service)
    wait_until_counted(service, made)
    for pid in service.worker_pids():
        with only_worker(service, pid):
            status, text, holder = service.get("/metrics")
        assert (status, holder) == (200, pid)
        assert missing_question_requests(text) == [made]
        assert sample(
            text,
            "herald_qa_http_request_duration_seconds_count",
            route="/api/questions/{question_id}",
        ) == [made]
        assert len(sample(text, "herald_qa_outbox_lag_seconds")) == 1  # one series, not per pid


def test_the_counts_of_a_worker_that_died_stay_in_the_sums(service: Service) -> None:
    made = requests_answered_by_each_worker(service)
    wait_until_counted(service, made)
    victim = service.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(pids := service.worker_pids()) == 2 and victim not in pids, service)
    wait_until(lambda: _answers_health(service), service)
    for _ in range(10):
        assert missing_question_requests(service.scrape()) == [made]


def test_the_metrics_directory_lives_as_long_as_the_service(service: Service) -> None:
    made = [path.name for path in service.tmp_dir.iterdir()]
    assert len(made) == 1
    assert made[0].startswith("herald-qa-metrics-")
    assert stop(service) == 0
    assert list(service.tmp_dir.iterdir()) == []


async def _insert_old_event(database: Path) -> None:
    db = Database.open(Settings(database_url=f"sqlite:///{database}"))
    try:
        async with db.write() as session:
            created = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=OLD_EVENT_AGE_S)
            session.add(
                OutboxEvent(channel="question:1", payload={"type": "x"}, created_at=created)
            )
    finally:
        await db.close()


def test_the_outbox_lag_is_the_oldest_event_once_not_once_per_worker(
    tmp_path: Path, sqlite_template: Path
) -> None:
    # Both workers run a relay; the bus is a port nobody listens on, so the event waits.
    database = tmp_path / "template-with-event.sqlite3"
    shutil.copyfile(sqlite_template, database)
    asyncio.run(_insert_old_event(database))
    service = start_service(tmp_path, database, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    try:
        failures = "herald_qa_outbox_publish_failures_total"
        wait_until(lambda: sum(sample(service.scrape(), failures)) >= 4, service)
        for _ in range(10):
            text = service.scrape()
            [lag] = sample(text, "herald_qa_outbox_lag_seconds")
            # Its age (and the seconds since); a sum over the two relays would be twice that.
            assert OLD_EVENT_AGE_S <= lag < 1.5 * OLD_EVENT_AGE_S
            assert sample(text, "herald_qa_outbox_published_total") == [0.0]
    finally:
        stop(service)


def test_the_metrics_directory_is_in_the_environment_only_while_the_block_runs() -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": "/somewhere/else"}
    with multiprocess_dir(env) as path:
        assert env["PROMETHEUS_MULTIPROC_DIR"] == path
        assert Path(path).is_dir()
        assert list(Path(path).iterdir()) == []
    assert env == {"PROMETHEUS_MULTIPROC_DIR": "/somewhere/else"}
    assert not Path(path).exists()


WORKER_SCRIPT = """
import sys
from qasite.core.metrics import build_metrics
metrics = build_metrics()
metrics.outbox_lag.set(float(sys.argv[1]))
metrics.outbox_published.inc(3)
print("counted", flush=True)
sys.stdin.read()  # alive until the test closes stdin
"""


def start_worker(multiproc_dir: Path, lag_s: float) -> subprocess.Popen[str]:
    """A process that records metrics the way a worker does, and stays alive."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(lag_s)],
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline() == "counted\n"
    return worker


def test_a_dead_workers_lag_is_forgotten_and_its_counts_stay(tmp_path: Path) -> None:
    metrics = build_metrics(multiproc_dir=str(tmp_path))
    live, dead = start_worker(tmp_path, 7.0), start_worker(tmp_path, 600.0)
    try:
        text = render(metrics)
        assert sample(text, "herald_qa_outbox_lag_seconds") == [600.0]
        assert sample(text, "herald_qa_outbox_published_total") == [6.0]
        dead.communicate("")
        text = render(metrics)
        assert sample(text, "herald_qa_outbox_lag_seconds") == [7.0]
        assert sample(text, "herald_qa_outbox_published_total") == [6.0]
    finally:
        for worker in (live, dead):
            worker.communicate("")
