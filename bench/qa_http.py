"""HTTP benchmark of the Q&A core: GET /api/questions/{id} and search on a seeded database.

    .venv/bin/python -m bench.qa_http --questions 1000000 --users 50000 --profile 10 \\
        --database-url postgresql://postgres@127.0.0.1/herald_bench_1m
    .venv/bin/python -m bench.qa_http --smoke              # SQLite, 2,000 questions, seconds

What it does, bounded in time and count:

1. seeds the database with ``herald-qa seed`` when it holds fewer than ``--questions``;
2. starts the service as production runs it: ``python -m qasite serve --workers N``
   (uvicorn with uvloop + httptools, ``HERALD_QA_ENVIRONMENT=production`` with configured
   secrets, access log on, no Redis: the relay is off, which reads do not need);
3. per scenario, a warm-up then a measured run of closed-loop keep-alive connections from a
   raw asyncio HTTP/1.1 client in this process (uvloop; it measures its own CPU):

   * ``question``: GET /api/questions/{id}, ids uniform over the whole table;
   * ``search``: GET /api/questions?q=<two words>, ranked by relevance (the default with q);
   * ``tag_newest``: GET /api/questions?tag=<Zipf-popular tag>&sort=newest (a keyset list);

4. records requests/s, p50/p95/p99/max latency, status counts, the CPU of the load
   generator, the server's workers, PostgreSQL's backends and the whole machine; with
   ``--profile S``, py-spy records one worker for S seconds (collapsed stacks in
   ``--log-dir``);
5. writes JSON (``--output``).

Counts are the contract of the smoke run (tests/bench/test_qa_http.py); the numbers are for
bench/results/QA_HTTP.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import cpu_s, descendants, machine, machine_busy_s

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

SEARCH_WORDS = (
    ("parse", "date"), ("socket", "timeout"), ("upload", "image"), ("merge", "branch"),
    ("thread", "lock"), ("read", "file"), ("sort", "list"), ("cache", "session"),
    ("convert", "string"), ("query", "index"), ("deploy", "container"), ("stream", "buffer"),
    ("encode", "token"), ("validate", "form"), ("render", "component"), ("join", "table"),
)  # fmt: skip
TAGS = ("python", "javascript", "java", "c#", "php", "android", "html", "jquery", "css", "sql",
        "postgresql", "redis", "docker", "rust", "asyncio", "fastapi")  # fmt: skip


@dataclass
class Run:
    """One measured run of one scenario."""

    scenario: str
    connections: int
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ns: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    bytes_in: int = 0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ns)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] / 1e6, 3)

        return {
            "scenario": self.scenario,
            "connections": self.connections,
            "requests": self.requests,
            "ok": self.statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(self.requests / self.elapsed_s, 1) if self.elapsed_s else 0,
            "latency_ms": {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": pct(100)},
            "mean_response_bytes": round(self.bytes_in / self.requests) if self.requests else 0,
        }


# --- the load generator: raw HTTP/1.1 keep-alive ---------------------------------------------


async def _one_connection(
    host: str, port: int, requests: Iterator[bytes], run: Run, deadline: float, budget: list[int]
) -> None:
    """Closed loop on one keep-alive connection until *deadline* or the shared budget ends."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        run.errors[f"connect: {type(exc).__name__}"] += 1
        return
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            request = next(requests)
            began = time.perf_counter_ns()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            if length is None:
                run.errors["response without content-length"] += 1
                return
            await reader.readexactly(length)
            run.latencies_ns.append(time.perf_counter_ns() - began)
            run.statuses[status] += 1
            run.requests += 1
            run.bytes_in += length + len(head)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        run.errors[type(exc).__name__] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _cycle(items: list[bytes], start: int) -> Iterator[bytes]:
    i = start
    while True:
        yield items[i % len(items)]
        i += 1


async def load(
    host: str, port: int, scenario: str, requests: list[bytes], *, connections: int,
    duration_s: float, max_requests: int,
) -> Run:  # fmt: skip
    """Run *connections* closed-loop clients over *requests* for at most *duration_s*."""
    run = Run(scenario, connections)
    budget = [max_requests]
    began = time.perf_counter()
    deadline = time.monotonic() + duration_s
    step = max(1, len(requests) // connections)
    await asyncio.gather(*(
        _one_connection(host, port, _cycle(requests, i * step), run, deadline, budget)
        for i in range(connections)
    ))  # fmt: skip
    run.elapsed_s = time.perf_counter() - began
    return run


def request_bytes(paths: list[str]) -> list[bytes]:
    return [f"GET {p} HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n\r\n".encode() for p in paths]


def scenario_paths(scenario: str, max_id: int, rng: random.Random, count: int) -> list[str]:
    if scenario == "question":
        return [f"/api/questions/{rng.randint(1, max_id)}" for _ in range(count)]
    if scenario == "search":
        return [f"/api/questions?q={a}+{b}" for a, b in (rng.choice(SEARCH_WORDS)
                                                        for _ in range(count))]  # fmt: skip
    if scenario == "tag_newest":
        weights = [1 / (rank + 1) for rank in range(len(TAGS))]
        picks = rng.choices(TAGS, weights=weights, k=count)
        return [f"/api/questions?tag={t.replace('#', '%23')}&sort=newest" for t in picks]
    raise ValueError(scenario)


# --- the service and the database -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def production_env(database_url: str, data_dir: Path, port: int) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_QA_")}
    env.pop("REDIS_URL", None)
    env.update(
        DATABASE_URL=database_url,
        HERALD_QA_ENVIRONMENT="production",
        HERALD_QA_DATA_DIR=str(data_dir),
        HERALD_QA_ACCESS_TOKEN_SECRET="bench-" + os.urandom(16).hex(),
        HERALD_QA_SOCKET_PRIVATE_KEY_PEM=private,
        HERALD_QA_SOCKET_PUBLIC_KEY_PEM=public,
        HERALD_QA_PORT=str(port),
    )
    return env


def question_count(database_url: str) -> tuple[int, int]:
    """(count, max id) of questions, after migrating the database (empty: 0s)."""
    from sqlalchemy import text

    from qasite.core.db import Database, migrate
    from qasite.core.settings import Settings

    async def read() -> tuple[int, int]:
        db = Database.open(Settings(database_url=database_url))
        try:
            await migrate(db.engine)
            async with db.reads() as session:
                sql = text("SELECT count(*), coalesce(max(id), 0) FROM questions")
                row = (await session.execute(sql)).one()
        finally:
            await db.close()
        return int(row[0]), int(row[1])

    return asyncio.run(read())


def ensure_seeded(database_url: str, questions: int, users: int) -> dict[str, Any]:
    count, _ = question_count(database_url)
    if count >= questions:
        return {"seeded_now": False, "questions_found": count}
    began = time.perf_counter()
    env = dict(os.environ, DATABASE_URL=database_url)
    subprocess.run([PY, "-m", "qasite", "seed", "--questions", str(questions - count),
                    "--users", str(users), "--now", "2026-11-01T00:00:00"],
                   cwd=ROOT, env=env, check=True, timeout=3600)  # fmt: skip
    return {"seeded_now": True, "seed_s": round(time.perf_counter() - began, 1)}


@contextlib.contextmanager
def running_service(
    env: dict[str, str], workers: int, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen([PY, "-m", "qasite", "serve", "--workers", str(workers)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        try:
            wait_healthy(int(env["HERALD_QA_PORT"]), proc, workers)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as s,
        ):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if s.recv(100).startswith(b"HTTP/1.1 200") and len(worker_pids(proc)) >= workers:
                # every worker answers only once its lifespan (migrations) has run
                time.sleep(1.0)
                return
        time.sleep(0.2)
    raise RuntimeError("the service did not become healthy in 60 s")


def worker_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """The uvicorn worker processes (spawned children; not multiprocessing's resource tracker)."""
    pids = []
    for pid in descendants(proc.pid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if pid != proc.pid and b"spawn_main" in cmdline:
                pids.append(pid)
    return pids


def pg_sessions(database_url: str) -> int | None:
    """Sessions ever opened on the database (PostgreSQL 14+), None on SQLite."""
    if not database_url.startswith("postgres"):
        return None
    import asyncpg  # type: ignore[import-untyped]

    async def read() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            sql = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(read())


def pg_prewarm(database_url: str) -> float:
    """Read every table and index of the database once (into the OS cache): seconds taken.

    A freshly seeded database is larger than shared_buffers; without this the first minutes
    measure the disk rather than the service.
    """
    import asyncpg

    async def read() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            await conn.execute(
                "SELECT pg_prewarm(c.oid, 'read') FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')"
            )
        finally:
            await conn.close()

    began = time.perf_counter()
    asyncio.run(read())
    return round(time.perf_counter() - began, 1)


def postgres_pids() -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry.name}/comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


# --- one scenario -----------------------------------------------------------------------------


def measure_scenario(args: argparse.Namespace, proc: subprocess.Popen[bytes], port: int,
                     scenario: str, connections: int, max_id: int,
                     log_dir: Path) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(f"{args.seed}-{scenario}")
    requests = request_bytes(scenario_paths(scenario, max_id, rng, 20_000))
    if args.warmup > 0:
        asyncio.run(load("127.0.0.1", port, scenario, requests, connections=connections,
                         duration_s=args.warmup, max_requests=args.max_requests))  # fmt: skip
    workers = worker_pids(proc)
    sessions_before = pg_sessions(args.database_url or "")
    pg_before = {p: cpu_s(p) for p in postgres_pids()}
    before = (sum(cpu_s(p) for p in workers), 0.0, machine_busy_s(),
              resource.getrusage(resource.RUSAGE_SELF))  # fmt: skip
    profiler = None
    if args.profile and workers and shutil.which("py-spy", path=str(Path(PY).parent)):
        out = args.profile_dir / f"pyspy-{scenario}-c{connections}-{workers[0]}.txt"
        args.profile_dir.mkdir(parents=True, exist_ok=True)
        spy_log = (log_dir / f"pyspy-{scenario}-c{connections}.log").open("wb")
        profiler = subprocess.Popen(
            [str(Path(PY).parent / "py-spy"), "record", "-p", str(workers[0]), "-d",
             str(max(1, round(args.profile))), "-f", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=spy_log,
        )  # fmt: skip
    run = asyncio.run(load("127.0.0.1", port, scenario, requests, connections=connections,
                           duration_s=args.duration, max_requests=args.max_requests))  # fmt: skip
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Backends that appeared during the run count from zero; short-lived ones (parallel query
    # workers) are missed here and show up only in machine_cores.
    pg_cpu = sum(max(0.0, cpu_s(p) - pg_before.get(p, 0.0)) for p in postgres_pids())
    after = (sum(cpu_s(p) for p in workers), pg_cpu, machine_busy_s())
    if profiler is not None:
        profiler.wait(timeout=args.profile + 30)
        spy_log.close()
    wall = run.elapsed_s or 1.0
    loadgen_cpu = (usage.ru_utime - before[3].ru_utime) + (usage.ru_stime - before[3].ru_stime)
    cpu = {
        "workers_cores": round((after[0] - before[0]) / wall, 2),
        "postgres_cores": round((after[1] - before[1]) / wall, 2),
        "loadgen_cores": round(loadgen_cpu / wall, 2),
        "machine_cores": round((after[2] - before[2]) / wall, 2),
    }
    cpu["other_cores"] = round(
        cpu["machine_cores"] - cpu["workers_cores"] - cpu["postgres_cores"] - cpu["loadgen_cores"],
        2,
    )
    summary = run.summary()
    summary["cpu"] = cpu
    if sessions_before is not None:
        # -1: the sessions of pg_sessions() itself; new sessions mean pool churn
        sessions_after = pg_sessions(args.database_url) or 0
        summary["postgres_sessions_opened"] = sessions_after - sessions_before - 1
    if run.requests:
        summary["worker_cpu_ms_per_request"] = round(
            (after[0] - before[0]) * 1000 / run.requests, 3
        )
        summary["postgres_cpu_ms_per_request"] = round(
            (after[1] - before[1]) * 1000 / run.requests, 3
        )
    return summary


# --- the command ------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.qa_http", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    p.add_argument("--questions", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--connections", default="32", help="comma-separated: one run per value")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before each run")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="per run")
    p.add_argument("--scenarios", default="question,search,tag_newest")
    p.add_argument("--profile", type=float, default=0.0, help="py-spy seconds per scenario")
    p.add_argument("--profile-dir", type=Path, default=ROOT / "bench/results/raw/qa-http")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", type=Path, default=ROOT / "bench/results/qa-http.json")
    p.add_argument("--log-dir", type=Path, default=None)
    p.add_argument(
        "--smoke", action="store_true", help="SQLite, 2,000 questions, 300 requests per scenario"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.questions, args.users, args.max_requests = 2000, 200, 300
        args.connections, args.warmup, args.duration = "4", 0.0, 30.0
    return args


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # Unwind through the finally blocks: the service's process group is stopped, not orphaned.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    import uvloop

    with tempfile.TemporaryDirectory(prefix="qa-http-") as tmp:
        tmp_path = Path(tmp)
        log_dir = args.log_dir or tmp_path / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        database_url = args.database_url or f"sqlite:///{tmp_path / 'qa.sqlite3'}"
        seeding = ensure_seeded(database_url, args.questions, args.users)
        count, max_id = question_count(database_url)
        if database_url.startswith("postgres"):
            seeding["prewarm_s"] = pg_prewarm(database_url)
        port = free_port()
        env = production_env(database_url, tmp_path / "data", port)
        results: dict[str, Any] = {}
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        with running_service(env, args.workers, log_dir / "service.log") as proc:
            for scenario in args.scenarios.split(","):
                results[scenario] = []
                for connections in (int(c) for c in args.connections.split(",")):
                    run = measure_scenario(args, proc, port, scenario, connections, max_id, log_dir)
                    results[scenario].append(run)
                    print(json.dumps(run), flush=True)
    report = {
        "benchmark": "qa_http",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "database": database_url.split("://")[0] if args.database_url else "sqlite (temporary)",
        "questions": count,
        "seeding": seeding,
        "service": {
            "command": f"python -m qasite serve --workers {args.workers}",
            "environment": "production",
            "redis": None,
            "access_log": True,
        },
        "load": {
            "client": "raw asyncio HTTP/1.1 keep-alive, closed loop, uvloop, in-process",
            "connections": [int(c) for c in args.connections.split(",")],
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "max_requests": args.max_requests,
        },
        "machine": machine(),
        "scenarios": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
