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
   * ``question_warm``: GET /api/questions/{id} over a hot set of ``--hot-set`` ids, each
     read ``WARM_PASSES`` times in the warm-up (the page cache warm, issue 15);
   * ``question_cold``: GET /api/questions/{id}, every id read once and never before in
     the run (every read builds its page; the warm-up reads other ids);

   with ``--page-cache on,off`` every scenario runs against a service with the page cache on,
   then one with it off (``HERALD_QA_PAGE_CACHE``), side by side in one JSON; the page
   cache's hits and misses over each measured run are read from ``/metrics``;

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
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TypedDict, cast

from bench.http_load import RunSummary, load, request_bytes, scenario_paths
from bench.measure import cpu_s, descendants, machine, machine_busy_s
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class Seeding(TypedDict, total=False):
    seeded_now: bool
    questions_found: int
    seed_s: float
    prewarm_s: float


class CpuCores(TypedDict):
    """CPU over the measured run, in cores (CPU seconds per second of the run)."""

    workers_cores: float
    postgres_cores: float
    loadgen_cores: float
    machine_cores: float
    other_cores: float


class Measurement(RunSummary, total=False):
    cpu: CpuCores
    uptime_load: float
    """The 1-minute load average when the run ended."""
    page_cache: dict[str, float]
    """``herald_qa_page_cache_total`` over the run, by ``<level>_<result>`` (cache on only)."""
    postgres_sessions_opened: int
    """New PostgreSQL sessions during the run (pool churn); PostgreSQL only."""
    worker_cpu_ms_per_request: float
    postgres_cpu_ms_per_request: float


# --- the service and the database -------------------------------------------------------------


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


def ensure_seeded(database_url: str, questions: int, users: int) -> Seeding:
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


def _start_profiler(
    args: argparse.Namespace, scenario: str, connections: int, worker: int, log_dir: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes]] | None:
    """py-spy on *worker* for ``--profile`` seconds, when asked and installed."""
    if not args.profile or not shutil.which("py-spy", path=str(Path(PY).parent)):
        return None
    out = args.profile_dir / f"pyspy-{scenario}-c{connections}-{worker}.txt"
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    spy_log = (log_dir / f"pyspy-{scenario}-c{connections}.log").open("wb")
    profiler = subprocess.Popen(
        [str(Path(PY).parent / "py-spy"), "record", "-p", str(worker), "-d",
         str(max(1, round(args.profile))), "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=spy_log,
    )  # fmt: skip
    return profiler, spy_log


WARM_PASSES = 6
"""Reads of each hot id in ``question_warm``'s warm-up: each worker keeps its own L1 and the
kernel picks the worker, so with 3 passes 1 in 8 ids missed one of two workers (89% hits)."""
COLD_IDS = 200_000
"""Distinct ids ``question_cold`` draws: more than a measured run reads, so none repeats."""


def page_paths(
    scenario: str, max_id: int, rng: random.Random, hot_set: int
) -> tuple[list[str], list[str], int]:
    """(warm-up paths, measured paths, warm-up request bound) of the page cache scenarios."""
    if scenario == "question_warm":
        hot = [f"/api/questions/{i}" for i in rng.sample(range(1, max_id + 1), hot_set)]
        measured = [rng.choice(hot) for _ in range(20_000)]
        return hot, measured, hot_set * WARM_PASSES
    ids = rng.sample(range(1, max_id + 1), min(max_id, COLD_IDS + 5_000))
    paths = [f"/api/questions/{i}" for i in ids]
    warm = min(5_000, len(paths) // 10)
    return paths[:warm], paths[warm:], warm  # warm-up ids are never measured


def cache_counts(port: int) -> dict[str, float]:
    """``herald_qa_page_cache_total`` of the service (summed over its workers), by
    ``<level>_<result>``; empty when the service has none."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    counts: dict[str, float] = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("herald_qa_page_cache_total{"):
            labels, _, value = line.rpartition(" ")
            level = labels.split('level="')[1].split('"')[0]
            result = labels.split('result="')[1].split('"')[0]
            counts[f"{level}_{result}"] = counts.get(f"{level}_{result}", 0.0) + float(value)
    return counts


def measure_scenario(args: argparse.Namespace, proc: subprocess.Popen[bytes], port: int,
                     scenario: str, connections: int, max_id: int,
                     log_dir: Path) -> Measurement:  # fmt: skip
    """A warm-up, then one measured run of *scenario* with *connections* connections."""
    rng = random.Random(f"{args.seed}-{scenario}")
    if scenario in ("question_warm", "question_cold"):
        warm_paths, paths, warm_bound = page_paths(scenario, max_id, rng, args.hot_set)
        warm_requests, requests = request_bytes(warm_paths), request_bytes(paths)
        warm_s = max(args.warmup, 120.0 if scenario == "question_warm" else args.warmup)
    else:
        requests = request_bytes(scenario_paths(scenario, max_id, rng, 20_000))
        warm_requests, warm_bound, warm_s = requests, args.max_requests, args.warmup
    if args.warmup > 0:
        asyncio.run(load("127.0.0.1", port, scenario, warm_requests, connections=connections,
                         duration_s=warm_s, max_requests=warm_bound))  # fmt: skip
    counts0 = cache_counts(port)
    workers = worker_pids(proc)
    sessions_before = pg_sessions(args.database_url or "")
    pg_before = {p: cpu_s(p) for p in postgres_pids()}
    workers0, busy0 = sum(cpu_s(p) for p in workers), machine_busy_s()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    profiling = (
        _start_profiler(args, scenario, connections, workers[0], log_dir) if workers else None
    )
    run = asyncio.run(load("127.0.0.1", port, scenario, requests, connections=connections,
                           duration_s=args.duration, max_requests=args.max_requests))  # fmt: skip
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # Backends that appeared during the run count from zero; short-lived ones (parallel query
    # workers) are missed here and show up only in machine_cores.
    pg_cpu = sum(max(0.0, cpu_s(p) - pg_before.get(p, 0.0)) for p in postgres_pids())
    workers_cpu = sum(cpu_s(p) for p in workers) - workers0
    busy = machine_busy_s() - busy0
    if profiling is not None:
        profiling[0].wait(timeout=args.profile + 30)
        profiling[1].close()
    wall = run.elapsed_s or 1.0
    loadgen_cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    cores = [round(x / wall, 2) for x in (workers_cpu, pg_cpu, loadgen_cpu, busy)]
    summary = cast(Measurement, run.summary())  # extended here with what the server used
    summary["cpu"] = {
        "workers_cores": cores[0],
        "postgres_cores": cores[1],
        "loadgen_cores": cores[2],
        "machine_cores": cores[3],
        "other_cores": round(cores[3] - cores[0] - cores[1] - cores[2], 2),
    }
    counts = cache_counts(port)
    if counts:
        summary["page_cache"] = {k: v - counts0.get(k, 0.0) for k, v in sorted(counts.items())}
    if sessions_before is not None:
        # -1: the sessions of pg_sessions() itself; new sessions mean pool churn
        sessions_after = pg_sessions(args.database_url) or 0
        summary["postgres_sessions_opened"] = sessions_after - sessions_before - 1
    if run.requests:
        summary["worker_cpu_ms_per_request"] = round(workers_cpu * 1000 / run.requests, 3)
        summary["postgres_cpu_ms_per_request"] = round(pg_cpu * 1000 / run.requests, 3)
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
    p.add_argument(
        "--scenarios",
        default="question,search,tag_newest",
        help="of question, search, tag_newest, question_warm, question_cold",
    )
    p.add_argument("--page-cache", default="on", help="comma-separated on/off: a service each")
    p.add_argument("--hot-set", type=int, default=4_000, help="ids question_warm reads")
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
        results: dict[str, list[Measurement]] = {}
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        modes = args.page_cache.split(",")
        for mode in modes:
            env["HERALD_QA_PAGE_CACHE"] = "true" if mode == "on" else "false"
            service_log = log_dir / f"service-cache-{mode}.log"
            with running_service(env, args.workers, service_log) as proc:
                for scenario in args.scenarios.split(","):
                    key = scenario if len(modes) == 1 else f"{scenario} (cache {mode})"
                    results[key] = []
                    for connections in (int(c) for c in args.connections.split(",")):
                        run = measure_scenario(args, proc, port, scenario, connections, max_id,
                                               log_dir)  # fmt: skip
                        run["uptime_load"] = round(os.getloadavg()[0], 2)
                        results[key].append(run)
                        print(key, json.dumps(run), flush=True)
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
            "page_cache": args.page_cache,
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
