"""The five scenarios of issue 3 (section 1, a-e), each a bounded coroutine over a Bench.

Every scenario starts its own server(s) through bench/targets.py, drives the load processes
(bench/loadgen/engine.py), measures the server's process tree before and after
(bench/measure.py) and returns a JSON-ready dict. Nothing here asserts a timing: the numbers
go to the report; only counts are checked (and reported) here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import measure
from bench.loadgen.engine import LoadGenerator
from bench.targets import Target
from bench.workload import NOMINAL, Population

HOST = "127.0.0.1"
BROADCAST_CHANNEL = "tag:bench"
PAD = "x" * 48
"""Publication data is {"ts": ms, "n": i, "pad": PAD}: about 120 bytes per frame."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def percentiles(samples: Sequence[float]) -> dict[str, float | int | None]:
    if not samples:
        return {"samples": 0, "p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    import numpy as np

    a = np.asarray(samples)
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return {
        "samples": len(samples),
        "p50_ms": round(float(p50), 2),
        "p99_ms": round(float(p99), 2),
        "p999_ms": round(float(p999), 2),
        "max_ms": round(float(a.max()), 2),
    }


@dataclass
class RedisProcess:
    """A private redis-server on a free port (never 6379), stopped with SHUTDOWN NOSAVE."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir),
                 "--maxclients", "10000", "--logfile", str(self.workdir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self.command(b"PING").startswith(b"+PONG"):
                    return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError("redis-server did not start")

    def command(self, line: bytes) -> bytes:
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as s:
                s.sendall(line + b"\r\n")
                return s.recv(4096)
        except OSError:
            return b""

    def flush(self) -> None:
        self.command(b"FLUSHALL")

    def cpu_s(self) -> float:
        return measure.cpu_s(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        self.command(b"SHUTDOWN NOSAVE")
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass
class Bench:
    gen: LoadGenerator
    redis: RedisProcess
    targets: dict[str, Target]
    log_dir: Path
    scale: Any
    notes: list[str] = field(default_factory=list)
    code_sha: str = ""
    """server_code_sha() when the run began (a server started on other code is noted)."""
    profile_s: float = 0.0
    """With ``--profile S``: py-spy records each server worker for S seconds during the
    measured phase of qa_mix and storm (collapsed stacks in the log directory)."""

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


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


# --- servers --------------------------------------------------------------------------------


def kill_tree(root: int) -> None:
    """SIGKILL *root* and every descendant (the crash of a whole fleet)."""
    for pid in reversed(measure.descendants(root)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def syscw(pids: Sequence[int]) -> int:
    """write()/writev() calls made by *pids* (/proc/<pid>/io ``syscw``)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("syscw:"):
                    total += int(line.split()[1])
    return total


class Server:
    """A running target: its process tree, port and (for Herald) metrics."""

    def __init__(self, target: Target, proc: subprocess.Popen[bytes], port: int, workers: int):
        self.target = target
        self.proc = proc
        self.port = port
        self.workers = workers

    def sample(self) -> measure.TreeSample:
        return measure.sample_tree(self.proc.pid)

    def writes(self) -> int:
        return syscw(measure.descendants(self.proc.pid))

    def metric(self, name: str, **labels: str) -> float | None:
        """Sum of a Herald metric's samples matching *labels* (None if unavailable)."""
        if self.target.name != "herald":
            return None
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
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


@contextlib.asynccontextmanager
async def running(
    bench: Bench, target: Target, workers: int, port: int | None = None
) -> AsyncIterator[Server]:
    port = port or free_port()
    code = measure.server_code_sha()
    if target.name == "herald" and code != bench.code_sha:
        bench.notes.append(
            f"socketsrv/publisher changed on disk during the run: a {target.name} server "
            f"started at {time.strftime('%H:%M:%S')} runs code {code}, the run began with "
            f"{bench.code_sha}"
        )
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
        bench.redis.flush()


async def stop_server(server: Server) -> None:
    pids = measure.descendants(server.proc.pid)
    await asyncio.to_thread(server.target.stop, server.proc)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def cpu_of_loadgen(bench: Bench) -> float:
    return float((await bench.gen.stats())["cpu_s"])


async def wait_publications(bench: Bench, expected: int, timeout_s: float) -> dict[str, Any]:
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


def data(n: int) -> dict[str, Any]:
    return {"ts": time.time() * 1000.0, "n": n, "pad": PAD}


def connection_summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "lost_unexpectedly": stats["lost_unexpectedly"],
        "closes_by_code": stats["closes"],
        "connect_failures": stats["connect_failures"],
        "handshake_failures": stats["handshake_failures"],
        "adapter_errors": stats["adapter_errors"],
        "adapter_error_codes": stats.get("adapter_error_codes", {}),
    }


# --- a. idle --------------------------------------------------------------------------------


async def idle(bench: Bench) -> list[dict[str, Any]]:
    """N connections, each subscribed to one of 100 channels: memory per connection
    (process RSS delta / N, kernel memory apart) and the CPU spent holding them."""
    runs = []
    for name, plans in bench.scale.idle.items():
        if name not in bench.targets:
            continue
        for workers, sizes in plans:
            runs.append(await _idle_run(bench, bench.targets[name], workers, sizes))
    return runs


async def _idle_run(bench: Bench, target: Target, workers: int, sizes: list[int]) -> dict[str, Any]:
    scale = bench.scale
    assignments = [[f"question:{1 + i % 100}"] for i in range(max(sizes))]
    run: dict[str, Any] = {"target": target.name, "workers": workers, "points": []}
    async with running(bench, target, workers) as srv:
        await asyncio.sleep(scale.settle_s)
        base, kernel0 = srv.sample(), measure.kernel_memory_kib()
        run["rss_before_kib"] = base.rss_kib
        opened = 0
        for size in sizes:
            t0 = time.monotonic()
            r = await bench.gen.open(
                HOST, srv.port, assignments[opened:size], timeout_s=scale.open_timeout_s,
                concurrency=scale.open_concurrency,
            )  # fmt: skip
            opened += r["opened"]
            open_s = time.monotonic() - t0
            await asyncio.sleep(scale.settle_s)
            s, kernel = srv.sample(), measure.kernel_memory_kib()
            point = {
                "requested": size,
                "connections": opened,
                "connections_per_worker": round(opened / workers),
                "open_seconds": round(open_s, 2),
                "opened_per_s": round(r["opened"] / max(open_s, 1e-9)),
                "rss_kib": s.rss_kib,
                "per_pid_rss_kib": list(s.per_pid_rss_kib),
                "rss_per_connection_kib": round((s.rss_kib - base.rss_kib) / max(opened, 1), 2),
                "kernel_tcp_buffers_per_connection_kib": round(
                    (kernel["tcp_mem_kib"] - kernel0["tcp_mem_kib"]) / max(opened, 1), 2
                ),
                "kernel_slab_per_connection_kib": round(
                    (kernel["slab_kib"] - kernel0["slab_kib"]) / max(opened, 1), 2
                ),
            }
            run["points"].append(point)
            bench.log(
                f"idle {target.name} x{workers}: {opened} conns, "
                f"{point['rss_per_connection_kib']} KiB/conn RSS, open {open_s:.1f}s"
            )
            if opened < size:
                bench.notes.append(f"idle {target.name}: opened {opened} of {size}")
                break
        # Holding them: CPU over a window longer than one heartbeat interval.
        s0, lg0, t0 = srv.sample(), await cpu_of_loadgen(bench), time.monotonic()
        await asyncio.sleep(scale.idle_window_s)
        s1, lg1, t1 = srv.sample(), await cpu_of_loadgen(bench), time.monotonic()
        stats = await bench.gen.stats()
        run["hold"] = {
            "connections": opened,
            "seconds": round(t1 - t0, 2),
            "server_cpu_s": round(s1.cpu_s - s0.cpu_s, 3),
            "server_cpu_percent": round(100 * (s1.cpu_s - s0.cpu_s) / (t1 - t0), 2),
            "server_cpu_us_per_connection_per_s": round(
                1e6 * (s1.cpu_s - s0.cpu_s) / (t1 - t0) / max(opened, 1), 3
            ),
            "loadgen_cpu_s": round(lg1 - lg0, 3),
            "still_open": stats["open"],
            **connection_summary(stats),
        }
    return run


# --- b. broadcast ---------------------------------------------------------------------------


async def broadcast(bench: Bench) -> list[dict[str, Any]]:
    """One channel, N subscribers, publications as fast as the fleet delivers them (a
    window of publications in flight); deliveries per server CPU-second; every client's
    count checked; then a burst of publications at once (frames per write)."""
    runs = []
    for name, plans in bench.scale.broadcast.items():
        if name not in bench.targets:
            continue
        for workers, sizes in plans:
            runs.append(await _broadcast_run(bench, bench.targets[name], workers, sizes))
    return runs


async def _broadcast_run(
    bench: Bench, target: Target, workers: int, sizes: list[int]
) -> dict[str, Any]:
    scale = bench.scale
    run: dict[str, Any] = {"target": target.name, "workers": workers, "points": []}
    async with running(bench, target, workers) as srv:
        publisher = target.publisher(bench.redis.url)
        await publisher.open()
        try:
            opened = 0
            for size in sizes:
                r = await bench.gen.open(
                    HOST, srv.port, [[BROADCAST_CHANNEL]] * (size - opened),
                    probe_every=100, timeout_s=scale.open_timeout_s,
                    concurrency=scale.open_concurrency,
                )  # fmt: skip
                opened += r["opened"]
                if opened < size:
                    bench.notes.append(f"broadcast {target.name}: opened {opened} of {size}")
                for i, window in enumerate(scale.broadcast_windows):
                    point = await _broadcast_point(bench, srv, publisher, opened, window)
                    if i == 0:
                        point["burst"] = await _burst(bench, srv, publisher, opened)
                    run["points"].append(point)
                    bench.log(
                        f"broadcast {target.name} x{workers}: {opened} conns, window {window}: "
                        f"{point['deliveries_per_s']:.0f}/s, "
                        f"{point['deliveries_per_server_cpu_s']:.0f}/server-cpu-s, "
                        f"{point['server_writes_per_delivery']} writes/delivery, "
                        f"missing {point['verify']['missing']}"
                    )
                if opened < size:
                    break
        finally:
            await publisher.close()
    return run


async def _broadcast_point(
    bench: Bench, srv: Server, publisher: Any, n: int, window: int
) -> dict[str, Any]:
    """*window* publications may be ahead of the average client: with more than one, a
    server gets several publications per event-loop turn and may coalesce their frames;
    with one (lockstep), every publication is delivered alone."""
    scale = bench.scale
    deliveries = scale.broadcast_deliveries_for.get(srv.target.name, scale.broadcast_deliveries)
    pubs = max(scale.broadcast_min_pubs, min(scale.broadcast_max_pubs, deliveries // max(n, 1)))
    await asyncio.sleep(scale.settle_s)
    await bench.gen.reset()
    m0 = (await bench.gen.progress())["messages"]
    s0, w0, lg0, r0 = srv.sample(), srv.writes(), await cpu_of_loadgen(bench), bench.redis.cpu_s()
    t0 = time.monotonic()
    deadline = t0 + scale.broadcast_timeout_s
    published = 0
    while published < pubs and time.monotonic() < deadline:
        delivered = (await bench.gen.progress())["messages"] - m0
        allowed = min(pubs - published, int(delivered / n) + window - published)
        for _ in range(max(0, allowed)):
            await publisher.publish(BROADCAST_CHANNEL, data(published))
            published += 1
        if allowed <= 0:
            await asyncio.sleep(0.003)
    await wait_messages(bench, m0, n * pubs, max(1.0, deadline - time.monotonic()))
    t1 = time.monotonic()
    s1, w1, lg1, r1 = srv.sample(), srv.writes(), await cpu_of_loadgen(bench), bench.redis.cpu_s()
    stats = await wait_publications(bench, n * pubs, 10.0)
    verify = await bench.gen.verify({BROADCAST_CHANNEL: pubs})
    latencies = await bench.gen.latencies()
    delivered = stats["publications"] - stats["duplicates"]
    cpu = s1.cpu_s - s0.cpu_s
    point: dict[str, Any] = {
        "connections": n,
        "publications": pubs,
        "published": published,
        "window": window,
        "deliveries": delivered,
        "seconds": round(t1 - t0, 3),
        "deliveries_per_s": round(delivered / max(t1 - t0, 1e-9)),
        "server_cpu_s": round(cpu, 3),
        "deliveries_per_server_cpu_s": round(delivered / max(cpu, 1e-9)),
        "server_writes_per_delivery": round((w1 - w0) / max(delivered, 1), 3),
        "loadgen_cpu_s": round(lg1 - lg0, 3),
        "loadgen_cpu_us_per_delivery": round(1e6 * (lg1 - lg0) / max(delivered, 1), 2),
        "redis_cpu_s": round(r1 - r0, 3),
        "latency": percentiles(latencies),
        "gaps": stats["gaps"],
        "duplicates": stats["duplicates"],
        "verify": verify,
        **connection_summary(stats),
    }
    return point


async def _burst(bench: Bench, srv: Server, publisher: Any, n: int) -> dict[str, Any]:
    """K publications ready together: how many write calls reach each connection.

    ``CLIENT PAUSE 300 WRITE`` holds the K publish commands (scripts and PUBLISH alike) in
    Redis, which then runs them in one go and hands the server's subscription connection the
    K messages at once, for every target the same way."""
    k = bench.scale.burst_size
    await asyncio.sleep(0.3)
    before = await bench.gen.stats()
    m0, w0 = (await bench.gen.progress())["messages"], srv.writes()
    bench.redis.command(b"CLIENT PAUSE 300 WRITE")
    await asyncio.gather(*(publisher.publish(BROADCAST_CHANNEL, data(i)) for i in range(k)))
    await wait_messages(bench, m0, n * k, 30.0)
    await asyncio.sleep(0.2)
    w1 = srv.writes()
    after = await bench.gen.stats()
    frames = (after["publications"] - after["duplicates"]) - (
        before["publications"] - before["duplicates"]
    )
    writes = w1 - w0  # heartbeats that went out meanwhile are in here too (a few)
    return {
        "publications": k,
        "frames": frames,
        "server_writes": writes,
        "frames_per_write": round(frames / max(writes, 1), 2),
        "writes_per_connection": round(writes / max(n, 1), 2),
    }


# --- c. Q&A mix -----------------------------------------------------------------------------


class RatePublisher:
    """Publishes the Q&A mix at a rate through one target publisher (bounded in-flight)."""

    def __init__(self, publisher: Any, population: Population, max_in_flight: int = 256):
        self.publisher = publisher
        self.population = population
        self.counts: Counter[str] = Counter()
        self.failed = 0
        self.late_ticks = 0
        self._gate = asyncio.Semaphore(max_in_flight)
        self._n = 0

    async def _one(self, channel: str) -> None:
        try:
            await self.publisher.publish(channel, data(self._n))
            self.counts[channel] += 1
        except Exception:  # noqa: BLE001 - counted: the clients do not expect it
            self.failed += 1
        finally:
            self._gate.release()

    async def run(self, rates: Any, duration_s: float, stop: asyncio.Event | None = None) -> None:
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if now - started >= duration_s or (stop is not None and stop.is_set()):
                break
            due = int((now - started) * rates.total_per_s)
            while sent < due:
                if self._gate.locked():
                    self.late_ticks += 1
                await self._gate.acquire()
                self._n += 1
                task = asyncio.ensure_future(self._one(self.population.draw_event(rates)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks, timeout=10)


async def qa_mix(bench: Bench) -> list[dict[str, Any]]:
    """Q&A population (bench/workload.py) on Herald; publications through the real path at
    the nominal rate, then at multiples of it until p99 > 50 ms or a drop."""
    target = bench.targets.get("herald")
    if target is None:
        return []
    scale = bench.scale
    pop = Population(scale.qa_tabs)
    run: dict[str, Any] = {
        "target": "herald",
        "workers": scale.qa_workers,
        "tabs": pop.tabs,
        "questions": pop.questions,
        "subscriptions": sum(pop.subscribers.values()),
        "nominal_rates_per_100k_tabs": dataclasses.asdict(NOMINAL),
        "rate_boost": scale.qa_rate_boost,
        "steps": [],
    }
    async with running(bench, target, scale.qa_workers) as srv:
        r = await bench.gen.open(
            HOST, srv.port, pop.assignments, probe_every=scale.qa_probe_every,
            timeout_s=scale.open_timeout_s, concurrency=scale.open_concurrency,
        )  # fmt: skip
        run["opened"] = r["opened"]
        run["open_seconds"] = round(r["seconds"], 2)
        if r["opened"] < pop.tabs:
            bench.notes.append(f"qa_mix: opened {r['opened']} of {pop.tabs}")
        publisher = target.publisher(bench.redis.url)
        await publisher.open()
        try:
            # Up from the nominal rate until the bar breaks; if the nominal rate already
            # breaks it, down until a rate meets it (the highest rate that still does).
            for multiplier in scale.qa_multipliers:
                step = await _qa_step(bench, srv, publisher, pop, multiplier)
                run["steps"].append(step)
                if not step["meets_bar"]:
                    break
            if run["steps"] and not run["steps"][0]["meets_bar"]:
                for multiplier in scale.qa_lower_multipliers:
                    step = await _qa_step(bench, srv, publisher, pop, multiplier)
                    run["steps"].append(step)
                    if step["meets_bar"]:
                        break
        finally:
            await publisher.close()
    return [run]


async def _qa_step(
    bench: Bench, srv: Server, publisher: Any, pop: Population, multiplier: float
) -> dict[str, Any]:
    scale = bench.scale
    rates = NOMINAL.scaled(pop.tabs, multiplier * scale.qa_rate_boost)
    await asyncio.sleep(1.0)
    deadline = time.monotonic() + 60.0  # late handshakes of the open: let them finish
    while time.monotonic() < deadline:
        progress = await bench.gen.progress()
        if progress["ready"] >= progress["open"]:
            break
        await asyncio.sleep(0.5)
    await bench.gen.reset()
    await bench.gen.latencies()
    slow0 = srv.metric("herald_disconnects_total", code="4001") or 0.0
    s0, lg0, r0 = srv.sample(), await cpu_of_loadgen(bench), bench.redis.cpu_s()
    t0 = time.monotonic()
    rp = RatePublisher(publisher, pop)
    profiles = start_profiles(bench, srv, f"qa-x{multiplier}")
    await rp.run(rates, scale.qa_step_s)
    t_pub = time.monotonic() - t0
    await finish_profiles(profiles)
    expected = sum(count * pop.subscribers.get(ch, 0) for ch, count in rp.counts.items())
    stats = await wait_publications(bench, expected, 15.0)
    t1 = time.monotonic()
    s1, lg1, r1 = srv.sample(), await cpu_of_loadgen(bench), bench.redis.cpu_s()
    verify = await bench.gen.verify(dict(rp.counts))
    latencies = await bench.gen.latencies()
    slow1 = srv.metric("herald_disconnects_total", code="4001") or 0.0
    lat = percentiles(latencies)
    published = sum(rp.counts.values())
    drops = verify["missing"] + stats["gaps"]
    slow = int(slow1 - slow0)
    delivered = stats["publications"] - stats["duplicates"]
    p99 = lat["p99_ms"]
    bench.log(
        f"qa_mix x{multiplier}: {published / max(t_pub, 1e-9):.0f} pub/s, "
        f"{delivered / max(t_pub, 1e-9):.0f} deliveries/s, p99 {p99} ms, drops {drops} "
        f"(+{verify['missing_never_ready']} at {verify['clients_never_ready']} clients never "
        f"ready), slow {slow}"
    )
    return {
        "multiplier": multiplier,
        "rates_per_s": {
            "question": round(rates.question_per_s, 2),
            "user": round(rates.user_per_s, 2),
            "questions_new": rates.questions_new_per_s,
        },
        "publications": published,
        "publish_failures": rp.failed,
        "publisher_late_ticks": rp.late_ticks,
        "seconds": round(t_pub, 2),
        "publications_per_s": round(published / max(t_pub, 1e-9), 1),
        "expected_deliveries_per_s": round(pop.expected_deliveries_per_s(rates)),
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / max(t_pub, 1e-9)),
        "server_cpu_s": round(s1.cpu_s - s0.cpu_s, 3),
        "server_cpu_percent": round(100 * (s1.cpu_s - s0.cpu_s) / max(t1 - t0, 1e-9), 1),
        "loadgen_cpu_s": round(lg1 - lg0, 3),
        "redis_cpu_s": round(r1 - r0, 3),
        "latency": lat,
        "latency_cdf": _cdf(latencies),
        "drops": drops,
        "gaps": stats["gaps"],
        "verify": verify,
        "slow_disconnects": slow,
        "meets_bar": p99 is not None and p99 <= 50.0 and drops == 0 and slow == 0,
        **connection_summary(stats),
    }


def _cdf(samples: Sequence[float], points: int = 200) -> list[list[float]]:
    """A compact CDF: (latency ms, fraction) at *points* quantiles (for the plot)."""
    if not samples:
        return []
    import numpy as np

    qs = np.linspace(0, 1, points + 1)
    values = np.quantile(np.asarray(samples), qs)
    return [[round(float(v), 3), round(float(q), 4)] for v, q in zip(values, qs, strict=True)]


# --- d. churn -------------------------------------------------------------------------------


async def churn(bench: Bench) -> list[dict[str, Any]]:
    """Connect + subscribe + close, sustained at increasing rates (Herald)."""
    target = bench.targets.get("herald")
    if target is None:
        return []
    scale = bench.scale
    run: dict[str, Any] = {"target": "herald", "workers": scale.churn_workers, "steps": []}
    async with running(bench, target, scale.churn_workers) as srv:
        for rate in scale.churn_rates:
            await bench.gen.reset()
            s0 = srv.sample()
            r = await bench.gen.churn(
                HOST, srv.port, ["question:1"], rate_per_s=rate,
                duration_s=scale.churn_step_s, max_count=int(rate * scale.churn_step_s),
                concurrency=scale.churn_concurrency,
            )  # fmt: skip
            s1 = srv.sample()
            cycles = r.pop("cycle_ms")
            lat = percentiles(cycles)
            achieved = r["completed"] / max(r["seconds"], 1e-9)
            step = {
                "target_rate_per_s": rate,
                "achieved_per_s": round(achieved, 1),
                **r,
                "count_expected": int(rate * scale.churn_step_s),
                "cycle": lat,
                "server_cpu_s": round(s1.cpu_s - s0.cpu_s, 3),
                "server_cpu_ms_per_cycle": round(
                    1000 * (s1.cpu_s - s0.cpu_s) / max(r["completed"], 1), 3
                ),
                "sustained": r["failed"] == 0
                and r["completed"] >= 0.99 * int(rate * scale.churn_step_s)
                and achieved >= 0.95 * rate,
            }
            run["steps"].append(step)
            bench.log(
                f"churn {rate}/s: {step['completed']} done, {achieved:.0f}/s, "
                f"failed {step['failed']}, p99 cycle {lat['p99_ms']} ms"
            )
            if not step["sustained"]:
                break
    return [run]


# --- e. reconnect storm ---------------------------------------------------------------------


async def storm(bench: Bench) -> list[dict[str, Any]]:
    """N clients (the Q&A population) on a Herald fleet; publications keep flowing; the whole
    fleet is killed (SIGKILL) and started again; every client reconnects at once with its
    positions: time until all recovered, publications lost."""
    target = bench.targets.get("herald")
    if target is None:
        return []
    scale = bench.scale
    pop = Population(scale.storm_tabs, seed=5)
    rates = NOMINAL.scaled(pop.tabs, scale.storm_rate_multiplier)
    run: dict[str, Any] = {
        "target": "herald",
        "workers": scale.storm_workers,
        "tabs": pop.tabs,
        "subscriptions": sum(pop.subscribers.values()),
        "publish_rate_per_s": round(rates.total_per_s, 2),
        "reconnect_concurrency": scale.storm_concurrency,
    }
    port = free_port()
    async with running(bench, target, scale.storm_workers, port) as first:
        r = await bench.gen.open(
            HOST, port, pop.assignments, timeout_s=scale.open_timeout_s,
            concurrency=scale.open_concurrency,
        )  # fmt: skip
        run["opened"] = r["opened"]
        await bench.gen.reset()
        publisher = target.publisher(bench.redis.url)
        await publisher.open()
        rp = RatePublisher(publisher, pop)
        stop = asyncio.Event()
        publishing = asyncio.ensure_future(rp.run(rates, 3600.0, stop))
        try:
            await asyncio.sleep(scale.storm_before_s)
            t_kill = time.monotonic()
            at_kill = sum(rp.counts.values())
            kill_tree(first.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                first.proc.wait(10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if (await bench.gen.progress())["open"] == 0:
                    break
                await asyncio.sleep(0.05)
            run["clients_saw_loss_s"] = round(time.monotonic() - t_kill, 2)
            bench.log(f"storm: fleet killed, {pop.tabs} clients disconnected")
            if measure.server_code_sha() != bench.code_sha:
                bench.notes.append("socketsrv/publisher changed on disk before the storm restart")
            log = (bench.log_dir / f"herald-storm-{port}.log").open("ab")
            try:
                second_proc = await asyncio.to_thread(
                    target.start, port, bench.redis.url, scale.storm_workers, stderr=log
                )
            finally:
                log.close()
            second = Server(target, second_proc, port, scale.storm_workers)
            t_ready = time.monotonic()
            run["fleet_restart_s"] = round(t_ready - t_kill, 2)
            at_ready = sum(rp.counts.values())
            s0 = second.sample()
            profiles = start_profiles(bench, second, "storm")
            reconnecting = asyncio.ensure_future(
                bench.gen.reconnect_all(
                    HOST, port, concurrency=scale.storm_concurrency, timeout_s=scale.storm_timeout_s
                )
            )
            curve: list[list[float]] = []
            while not reconnecting.done():
                ready = (await bench.gen.progress())["ready"]
                curve.append([round(time.monotonic() - t_ready, 2), ready])
                await asyncio.wait([reconnecting], timeout=0.5)
            rc = reconnecting.result()
            t_rec = time.monotonic()
            run["ready_curve"] = curve
            run["time_to_ready_fraction_s"] = {
                str(f): next((t for t, r in curve if r >= f * pop.tabs), None)
                for f in (0.5, 0.9, 0.99)
            }
            s1 = second.sample()
            progress = await bench.gen.progress()
            run["time_to_recover_s"] = round(t_rec - t_ready, 2)
            run["outage_s"] = round(t_rec - t_kill, 2)
            run["reconnected"] = rc["reconnected"]
            run["reconnect_retries"] = rc["retries"]
            run["ready_after"] = progress["ready"]
            run["server_cpu_s_during_recovery"] = round(s1.cpu_s - s0.cpu_s, 2)
            bench.log(
                f"storm: {rc['reconnected']}/{pop.tabs} recovered in {run['time_to_recover_s']} s"
            )
            await asyncio.sleep(scale.storm_after_s)
            await finish_profiles(profiles)
        finally:
            stop.set()
            await publishing
            await publisher.close()
        expected = sum(count * pop.subscribers.get(ch, 0) for ch, count in rp.counts.items())
        stats = await wait_publications(bench, expected, 30.0)
        verify = await bench.gen.verify(dict(rp.counts))
        run["publications"] = sum(rp.counts.values())
        run["publications_while_fleet_down"] = at_ready - at_kill
        run["publish_failures"] = rp.failed
        run["recovered_subscriptions"] = stats["recovered"]
        run["recovery_failed"] = stats["recovery_failed"]
        run["gaps"] = stats["gaps"]
        run["duplicates"] = stats["duplicates"]
        run["verify"] = verify
        run["lost"] = verify["missing"] + stats["gaps"]
        run["recoveries_metric"] = {
            k: second.metric("herald_recoveries_total", result=k)
            for k in ("none", "recovered", "failed")
        }
        run.update(connection_summary(stats))
        with contextlib.suppress(Exception):
            await bench.gen.close_all(timeout_s=20)
        await stop_server(second)
    return [run]
