"""What every scenario stands on: the :class:`Bench` it is given, a running :class:`Server`,
and the waits and measurements they share.

A scenario starts its server(s) with :func:`running` (bench/targets.py starts them), drives
the load processes (bench/loadgen/) and samples the server's process tree before and after
(bench/measure.py). Waits are bounded and poll the load processes' counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from redis import Redis

from bench import measure
from bench.loadgen.generator import LoadGenerator
from bench.loadgen.results import Stats
from bench.scales import Plans, Scale
from bench.targets import Target
from tests.support.redis_server import RedisServer, free_port

HOST = "127.0.0.1"

R = TypeVar("R")


@dataclass
class Bench:
    """One run: the load generator, the Redis every target publishes through, the targets,
    the scale, and the notes the report prints."""

    gen: LoadGenerator
    redis: RedisServer
    targets: dict[str, Target]
    log_dir: Path
    scale: Scale
    notes: list[str] = field(default_factory=list)
    code_sha: str = ""
    """server_code_sha() when the run began (a server started on other code is noted)."""
    profile_s: float = 0.0
    """With ``--profile S``: py-spy records each server worker for S seconds during the
    measured phase of qa_mix and storm (collapsed stacks in the log directory)."""
    _admin: Redis | None = None

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def redis_admin(self) -> Redis:
        """A synchronous client of the run's Redis, for FLUSHALL, CLIENT PAUSE and INFO."""
        if self._admin is None:
            self._admin = self.redis.client()
        return self._admin

    def redis_cpu_s(self) -> float:
        """CPU seconds the Redis server used so far (``INFO cpu``, user + system)."""
        info = self.redis_admin().info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Server:
    """A running target: its process tree, port and (for Herald) metrics."""

    def __init__(
        self, target: Target, proc: subprocess.Popen[bytes], port: int, workers: int
    ) -> None:
        self.target = target
        self.proc = proc
        self.port = port
        self.workers = workers

    def sample(self) -> measure.TreeSample:
        return measure.sample_tree(self.proc.pid)

    def writes(self) -> int:
        """write()/writev() calls made by the server's processes (/proc/<pid>/io)."""
        return syscw(measure.descendants(self.proc.pid))

    def metrics_text(self) -> str | None:
        """The fleet's /metrics exposition (None if unavailable, or not Herald)."""
        if self.target.name != "herald":
            return None
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def metric(self, name: str, **labels: str) -> float | None:
        """Sum of a Herald metric's samples matching *labels* (None if unavailable)."""
        text = self.metrics_text()
        if text is None:
            return None
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head != name and not head.startswith(name + "{"):
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


def interleaved(
    target_names: Sequence[str], plans: Plans, rounds: int
) -> list[tuple[int, str, int, list[int]]]:
    """The order a scenario runs its plans in: ``(round, target, workers, sizes)``.

    Every round runs each target's plans once, plan by plan, the targets in *target_names*
    order for each plan (herald x1, floor x1, herald x6, floor x6, then the next round), so
    two targets compared in a ratio run next to each other, and again in every round.
    Targets without a plan in *plans* are skipped."""
    names = [name for name in target_names if name in plans]
    depth = max((len(plans[name]) for name in names), default=0)
    order = []
    for round_ in range(max(1, rounds)):
        for i in range(depth):
            for name in names:
                if i < len(plans[name]):
                    workers, sizes = plans[name][i]
                    order.append((round_, name, workers, list(sizes)))
    return order


async def per_plan(
    bench: Bench, plans: Plans, run_one: Callable[[Bench, Target, int, list[int]], Awaitable[R]]
) -> list[R]:
    """``run_one(bench, target, workers, sizes)`` for every plan of every target of the run,
    interleaved over ``bench.scale.rounds`` rounds (:func:`interleaved`); each run gets the
    key ``round`` (0, 1, ...). Targets of *plans* that the run leaves out are skipped."""
    runs = []
    for round_, name, workers, sizes in interleaved(list(bench.targets), plans, bench.scale.rounds):
        if bench.scale.rounds > 1:
            bench.log(f"round {round_ + 1}/{bench.scale.rounds}: {name} x{workers}")
        result = await run_one(bench, bench.targets[name], workers, sizes)
        cast(dict[str, Any], result)["round"] = round_
        runs.append(result)
    return runs


def syscw(pids: Sequence[int]) -> int:
    """write()/writev() calls made by *pids* (/proc/<pid>/io ``syscw``)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("syscw:"):
                    total += int(line.split()[1])
    return total


def kill_tree(root: int) -> None:
    """SIGKILL *root* and every descendant (the crash of a whole fleet)."""
    for pid in reversed(measure.descendants(root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def note_code_change(bench: Bench, when: str) -> None:
    """Note it in the results when the product's code on disk changed since the run began
    (a server started now would run other code than the first ones)."""
    code = measure.server_code_sha()
    if code != bench.code_sha:
        bench.notes.append(
            f"the servers' code changed on disk during the run: {when} runs code {code}, "
            f"the run began with {bench.code_sha}"
        )


@contextlib.asynccontextmanager
async def running(
    bench: Bench, target: Target, workers: int, port: int | None = None
) -> AsyncIterator[Server]:
    """*target* with *workers* workers on *port* (a free one by default), the load
    processes' adapter set for it; on exit the connections are closed, the server stopped
    and Redis flushed."""
    port = port or free_port(HOST)
    if target.name == "herald":
        note_code_change(bench, f"a herald server started at {time.strftime('%H:%M:%S')}")
    log = (bench.log_dir / f"{target.name}-{port}.log").open("ab")
    bench.log(f"start {target.name} x{workers} on :{port}")
    proc = await asyncio.to_thread(target.start, port, bench.redis.url, workers, stderr=log)
    server = Server(target, proc, port, workers)
    try:
        await bench.gen.set_adapter(target.adapter, HOST, port)
        yield server
    finally:
        with contextlib.suppress(Exception):
            await bench.gen.close_all(timeout_s=20)
        await stop_server(server)
        log.close()
        bench.redis_admin().flushall()


async def stop_server(server: Server) -> None:
    """Stop *server* (its target's way), then SIGKILL whatever of its tree is left."""
    pids = measure.descendants(server.proc.pid)
    await asyncio.to_thread(server.target.stop, server.proc)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_profiles(bench: Bench, srv: Server, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on every process of *srv* but its root (the workers; the root too when it
    has no children), for ``bench.profile_s`` seconds; no-op unless asked."""
    if bench.profile_s <= 0:
        return []
    pids = measure.descendants(srv.proc.pid)
    workers = pids[1:] if len(pids) > 1 else pids
    procs = []
    for pid in workers:
        with contextlib.suppress(OSError):
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue  # multiprocessing's helper, not a worker
        out = bench.log_dir / f"pyspy-{label}-{srv.target.name}-{pid}.txt"
        procs.append(
            subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                 "-d", str(int(bench.profile_s)), "-r", "100", "-f", "raw", "-o", str(out),
                 "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    return procs


async def finish_profiles(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        await asyncio.to_thread(proc.wait, 120)


async def cpu_of_loadgen(bench: Bench) -> float:
    """CPU seconds the load processes used so far."""
    return (await bench.gen.stats())["cpu_s"]


async def wait_publications(bench: Bench, expected: int, timeout_s: float) -> Stats:
    """Poll until the clients hold *expected* publications (duplicates aside), or the count
    stops moving for 5 s, or *timeout_s*; return the last stats."""
    deadline = time.monotonic() + timeout_s
    last, still_since = -1, time.monotonic()
    while True:
        stats = await bench.gen.stats()
        got = stats["publications"] - stats["duplicates"]
        now = time.monotonic()
        if got >= expected or now > deadline:
            return stats
        if got != last:
            last, still_since = got, now
        elif now - still_since > 5.0:
            return stats
        await asyncio.sleep(0.1)


async def wait_messages(bench: Bench, start: int, expected: int, timeout_s: float) -> None:
    """Cheap wait (message counters only) until *expected* more messages arrived."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await bench.gen.progress())["messages"] - start >= expected:
            return
        await asyncio.sleep(0.01)
