"""A fleet worker under a flood from one abusive address, serving well-behaved clients.

    .venv/bin/python -m bench.abuse [--clients 1000] [--workers 1] [--channels 4] \
        [--rate 20] [--seconds 15] [--out bench/results/abuse.json]

Issue 11's figure: "a worker under a flood from one abusive address (pings, subscribe churn,
replay loops) serves 1,000 well-behaved clients with p99 within 1.5x of the same run without
the flood". In ONE run on this machine, on one redis-server
(:class:`tests.support.redis_server.RedisServer`), one fleet host (``python -m socketsrv
--workers W`` on 127.0.0.2, :class:`launch.hosts.FleetHost`; W = 1 by default: the figure is
about *a worker*) and N well-behaved websocket clients (bench/loadgen/, Herald protocol v1,
from load processes bound to 127.0.0.10, .11), each subscribed to one of C channels. A
publisher (this process, ``publisher.Publisher``) publishes at a fixed rate, round robin
over the channels; every ``probe_every``-th client measures publish-to-receive latency.

Two runs on the same host and clients, each bounded in count and time:

* ``calm``: the publications alone;
* ``flood``: the same publications while an abuser process bound to 127.0.0.50 runs raw
  websocket connections (:mod:`tests.support.raw_ws` frames) of three kinds, each
  reconnecting at once after every close (4006 or other): ``ping`` (batches of pings),
  ``churn`` (subscribe/unsubscribe on fresh ``question:<random id>`` channels), ``replay``
  (subscribe from offset 0 and unsubscribe on a channel whose history holds
  ``replay_publications`` publications of ~1 KB).

Reported per run: the well-behaved clients' deliveries (checked against what was published)
and latency p50/p99; the worker's CPU seconds and RSS (the fleet's processes, /proc), Redis's
and the load generator's CPU; the server's refusals from its ``/metrics`` (frames refused by
kind, replays refused, error replies by code, closes by code, handshake rejections); and, for
the flood, what the abuser saw (connections, handshake answers, closes by code, pongs,
errors, recoveries, bytes each way) and its own CPU. Then the ratios flood / calm.

Everything shares the machine's cores: the abuser's own CPU comes out of what the worker and
the clients could use, which the JSON records (``machine_busy_cpu_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import measure as proc_measure
from bench.hosts import wait_delivered
from bench.loadgen.generator import LoadGenerator
from bench.loadgen.herald import HeraldAdapter
from bench.scenarios.publishing import data
from bench.scenarios.summary import connection_summary, percentiles
from bench.shards import machine_busy_s
from bench.targets import HERALD_ENV, HeraldPublisher
from launch.hosts import FleetHost

FIRST_SOURCE = 10
"""Well-behaved load processes bind to 127.0.0.10, .11, ...: apart from the host's 127.0.0.2."""
ABUSER_ADDRESS = "127.0.0.50"
KINDS = ("ping", "churn", "replay", "replay_fresh")
REPLAY_CHANNEL = "question:990001"
REPLAY_ITEM = "r" * 1000
RUNS: dict[str, tuple[str, ...]] = {
    "calm": (),
    "flood": KINDS,
    **{f"only_{kind}": (kind,) for kind in KINDS},
    "calm_after": (),
}
"""Run name -> the abuser's kinds (none: no abuser). ``flood`` is the figure; the ``only_``
runs tell which kind costs what; ``calm_after`` shows how much the machine drifted."""
CLIENTS_PER_SOURCE = 150
"""Well-behaved clients per source address: below the worker's per-address connection limit
(``max_connections_per_address``, 200 by default), as 1,000 real clients on 1,000 addresses
would be. One load process per source address."""


@dataclass(frozen=True)
class Plan:
    """What one run does (the command's options)."""

    clients: int = 1000
    workers: int = 1
    channels: int = 4
    rate_per_s: float = 20.0
    seconds: float = 15.0
    """How long each run publishes (the flood starts ``flood_lead_s`` before)."""
    probe_every: int = 5
    abusers_per_kind: int = 4
    """Concurrent abusive connections of each kind, each reconnecting after every close."""
    max_abusive_connections: int = 20_000
    """Bound on connections the abuser opens in all (besides the time bound)."""
    ping_batch: int = 200
    churn_batch: int = 50
    replay_commands_per_s: float = 19.0
    """``replay`` paces itself just under the default command rate (20/s): never closed 4006,
    it meets the replay byte budget instead."""
    replay_fresh_pairs: int = 4
    """``replay_fresh``: this many replays from offset 0 per connection, then a new connection
    (a fresh per-connection budget)."""
    replay_publications: int = 300
    flood_lead_s: float = 1.0
    open_timeout_s: float = 120.0
    runs: tuple[str, ...] = tuple(RUNS)

    @property
    def processes(self) -> int:
        return max(2, math.ceil(self.clients / CLIENTS_PER_SOURCE))


# --- the abuser (a process of its own, bound to ABUSER_ADDRESS) ---------------------------

_CODE = re.compile(rb'"code"\s*:\s*(\d+)')
_RECOVERY = re.compile(rb'"recovery"\s*:\s*"(\w+)"')
_EPOCH = re.compile(rb'"epoch"\s*:\s*"([^"]*)"')


class AbuseCounts:
    """What the abuser saw, summed over its connections."""

    def __init__(self) -> None:
        self.c: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        self.c[key] += n


async def _read_frames(
    reader: asyncio.StreamReader,
    counts: AbuseCounts,
    kind: str,
    epoch: asyncio.Future[str],
    local: Counter[str],
) -> int | None:
    """Read server frames until the close frame or EOF; the close code (None: no close)."""
    while True:
        try:
            head = await reader.readexactly(2)
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        counts.add("bytes_received", 2 + n)
        opcode = head[0] & 0x0F
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if opcode == 0xA:
            counts.add("pongs")
            continue
        if payload.startswith(b'{"type":"pub') or b'"type": "pub' in payload[:20]:
            counts.add(f"{kind}_publications_received")
            continue
        if b'"error"' in payload[:30]:
            m = _CODE.search(payload)
            counts.add(f"error_{m.group(1).decode() if m else '?'}")
            continue
        counts.add("replies")
        m = _RECOVERY.search(payload)
        if m:
            counts.add(f"{kind}_recovery_{m.group(1).decode()}")
            local["recoveries"] += 1
        if not epoch.done():
            e = _EPOCH.search(payload)
            if e and kind.startswith("replay"):
                epoch.set_result(e.group(1).decode())


def _text(message: dict[str, Any]) -> bytes:
    from tests.support.raw_ws import OP_TEXT, client_frame

    return client_frame(OP_TEXT, json.dumps(message, separators=(",", ":")).encode())


async def _abuse_writes(
    kind: str,
    writer: asyncio.StreamWriter,
    plan: Plan,
    counts: AbuseCounts,
    epoch: asyncio.Future[str],
    closed: asyncio.Future[int | None],
    local: Counter[str],
) -> None:
    """Write *kind*'s flood until the connection closes."""
    from tests.support.raw_ws import OP_CLOSE, OP_PING, client_frame

    ids = iter(range(2, 2**31))
    if kind.startswith("replay"):
        writer.write(_text({"op": "subscribe", "channel": REPLAY_CHANNEL, "id": next(ids)}))
        either: set[asyncio.Future[Any]] = {epoch, closed}
        await asyncio.wait(either, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
        if not epoch.done():
            return
        writer.write(_text({"op": "unsubscribe", "channel": REPLAY_CHANNEL, "id": next(ids)}))
        # One replay at a time: an unsubscribe sent before the subscribe's reply cancels the
        # pending subscribe (no reply, nothing replayed), so each waits for its reply.
        since = {"epoch": epoch.result(), "offset": 0}
        pairs = plan.replay_fresh_pairs if kind == "replay_fresh" else 2**31
        pace_s = 0.0 if kind == "replay_fresh" else 2.0 / plan.replay_commands_per_s
        for n in range(pairs):
            frame = _text(
                {"op": "subscribe", "channel": REPLAY_CHANNEL, "since": since, "id": next(ids)}
            )
            writer.write(frame)
            counts.add("bytes_sent", len(frame))
            for _ in range(500):  # its reply, at most 5 s
                if closed.done() or local["recoveries"] >= n + 2:  # + the first subscribe
                    break
                await asyncio.sleep(0.01)
            frame = _text({"op": "unsubscribe", "channel": REPLAY_CHANNEL, "id": next(ids)})
            writer.write(frame)
            counts.add("bytes_sent", len(frame))
            counts.add(f"{kind}_commands_sent", 2)
            if closed.done():
                return
            await asyncio.sleep(pace_s)
        # replay_fresh: a new connection, with a fresh per-connection budget
        writer.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        return
    while not closed.done():
        frames: list[bytes] = []
        if kind == "ping":
            frames = [client_frame(OP_PING, b"p") for _ in range(plan.ping_batch)]
            counts.add("pings_sent", plan.ping_batch)
        else:
            for _ in range(plan.churn_batch):
                channel = f"question:{random.randrange(10**9, 10**10)}"
                frames.append(_text({"op": "subscribe", "channel": channel, "id": next(ids)}))
                frames.append(_text({"op": "unsubscribe", "channel": channel, "id": next(ids)}))
            counts.add("churn_commands_sent", 2 * plan.churn_batch)
        chunk = b"".join(frames)
        counts.add("bytes_sent", len(chunk))
        writer.write(chunk)
        try:
            await asyncio.wait_for(writer.drain(), 5.0)
        except (ConnectionError, TimeoutError):
            return
        await asyncio.sleep(0)


async def _one_connection(
    kind: str, host: str, port: int, plan: Plan, counts: AbuseCounts, stop_at: float
) -> None:
    from tests.support.raw_ws import parse_http_answer, upgrade_request

    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(ABUSER_ADDRESS, 0)), 5.0
        )
    except (OSError, TimeoutError) as exc:
        counts.add(f"connect_failed_{type(exc).__name__}")
        await asyncio.sleep(0.05)
        return
    counts.add("connections")
    counts.add(f"connections_{kind}")
    try:
        writer.write(upgrade_request())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                TimeoutError):  # fmt: skip
            counts.add("handshake_no_answer")
            return
        status = parse_http_answer(head).status
        counts.add(f"handshake_{status}")
        if status != 101:
            await asyncio.sleep(0.05)
            return
        writer.write(_text({"op": "connect", "id": 1}))
        loop = asyncio.get_running_loop()
        epoch: asyncio.Future[str] = loop.create_future()
        closed: asyncio.Future[int | None] = loop.create_future()
        local: Counter[str] = Counter()

        async def read() -> None:
            code = await _read_frames(reader, counts, kind, epoch, local)
            if not closed.done():
                closed.set_result(code)

        reading = asyncio.create_task(read())
        writing = asyncio.create_task(
            _abuse_writes(kind, writer, plan, counts, epoch, closed, local)
        )
        await asyncio.wait({reading}, timeout=max(0.0, stop_at - time.monotonic()))
        code = closed.result() if closed.done() else "open_at_end"
        counts.add(f"{kind}_close_{code}")
        for task in (reading, writing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _abuse(
    host: str, port: int, plan: Plan, seconds: float, kinds: tuple[str, ...] = KINDS
) -> dict[str, Any]:
    counts = AbuseCounts()
    stop_at = time.monotonic() + seconds
    opened = 0

    async def loop(kind: str) -> None:
        nonlocal opened
        while time.monotonic() < stop_at and opened < plan.max_abusive_connections:
            opened += 1
            await _one_connection(kind, host, port, plan, counts, stop_at)

    cpu0, began = time.process_time(), time.monotonic()
    tasks = [asyncio.create_task(loop(k)) for k in kinds for _ in range(plan.abusers_per_kind)]
    _, late = await asyncio.wait(tasks, timeout=seconds + 1.0)
    for task in late:  # a connection still waiting on a handshake or a close: cut
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "seconds": round(time.monotonic() - began, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        **dict(sorted(counts.c.items())),
    }


def abuser_main(
    host: str, port: int, plan: Plan, seconds: float, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """The abuser process: the floods of *kinds* at once from ABUSER_ADDRESS for *seconds*."""
    return asyncio.run(_abuse(host, port, plan, seconds, kinds))


# --- the server's side ------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfa]+)$")
WATCHED = (
    "herald_frames_refused_total", "herald_replays_refused_total", "herald_replay_bytes_total",
    "herald_errors_total", "herald_disconnects_total", "herald_handshake_rejections_total",
    "herald_connections_accepted_total", "herald_bytes_written_total",
    "herald_channels_subscribed", "herald_connections_open",
)  # fmt: skip


def server_metrics(address: str, port: int) -> dict[str, float]:
    """The watched samples of the host's ``/metrics`` (name{labels} -> value)."""
    url = f"http://{address}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10.0) as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) in WATCHED:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the counters grew by (gauges: their value after), zeros left out."""
    out = {}
    for key, value in after.items():
        grown = value if not key.split("{")[0].endswith("_total") else value - before.get(key, 0)
        if grown:
            out[key] = round(grown, 3)
    return dict(sorted(out.items()))


def worker_sample(host: FleetHost) -> dict[str, Any]:
    """CPU seconds and RSS of the host's workers (the supervisor's children) and supervisor."""
    assert host.process is not None
    pids = proc_measure.descendants(host.process.pid)
    workers = pids[1:] or pids
    return {
        "worker_cpu_s": sum(proc_measure.cpu_s(p) for p in workers),
        "worker_rss_kib": [proc_measure.rss_kib(p) for p in workers],
        "fleet_cpu_s": sum(proc_measure.cpu_s(p) for p in pids),
    }


@contextlib.contextmanager
def fleet_host(plan: Plan, redis_url: str, run_dir: Path) -> Iterator[FleetHost]:
    from tests.support.haproxy import loopback_hosts

    # The well-behaved clients stand for 1,000 households, not 7 addresses: their load
    # addresses are exempt, so the per-address limits count the abuser only (the default
    # exempts all of loopback, the abuser included).
    well_behaved = ",".join(f"127.0.0.{FIRST_SOURCE + i}/32" for i in range(plan.processes))
    env = {
        **os.environ,
        **HERALD_ENV,
        "HERALD_REDIS_URL": redis_url,
        "HERALD_ADDRESS_LIMIT_EXEMPT": well_behaved,
    }
    host = FleetHost(loopback_hosts(1)[0], workers=plan.workers, env=env, log_dir=run_dir)
    try:
        host.start()
        host.wait_ready()
        yield host
    finally:
        host.close()


async def run_once(
    name: str,
    gen: LoadGenerator,
    publisher: HeraldPublisher,
    host: FleetHost,
    subscribers: dict[str, int],
    plan: Plan,
    redis_pid: int,
    pool: ProcessPoolExecutor,
) -> dict[str, Any]:
    """One run (``calm`` or ``flood``): publish at the rate, wait, count, sample."""
    address, port = host.spec.address, host.spec.port
    channels = list(subscribers)
    await gen.reset()
    metrics0 = server_metrics(address, port)
    w0 = worker_sample(host)
    redis0, gen0 = proc_measure.cpu_s(redis_pid), (await gen.stats())["cpu_s"]
    machine0 = machine_busy_s()
    abuser = None
    kinds = RUNS[name]
    if kinds:
        seconds = plan.flood_lead_s + plan.seconds
        abuser = asyncio.wrap_future(pool.submit(abuser_main, address, port, plan, seconds, kinds))
        await asyncio.sleep(plan.flood_lead_s)
    counts: Counter[str] = Counter()
    expected = published = 0
    total = int(plan.rate_per_s * plan.seconds)
    started = time.monotonic()
    while published < total and time.monotonic() < started + plan.seconds + 1.0:
        due = min(total, int((time.monotonic() - started) * plan.rate_per_s) + 1)
        while published < due:
            ch = channels[published % len(channels)]
            await publisher.publish(ch, data(published))
            published += 1
            counts[ch] += 1
            expected += subscribers[ch]
        await asyncio.sleep(max(0.0, started + published / plan.rate_per_s - time.monotonic()))
    publish_s = time.monotonic() - started
    delivered, _ = await wait_delivered(gen, expected, time.monotonic() + 30.0)
    w1 = worker_sample(host)
    redis1, gen1 = proc_measure.cpu_s(redis_pid), (await gen.stats())["cpu_s"]
    machine1 = machine_busy_s()
    abuse = await asyncio.wait_for(abuser, plan.seconds + 120.0) if abuser else None
    metrics1 = server_metrics(address, port)
    stats = await gen.stats()
    verify = await gen.verify(dict(counts))
    latencies = await gen.latencies()
    result: dict[str, Any] = {
        "published": published,
        "publish_seconds": round(publish_s, 3),
        "expected_deliveries": expected,
        "deliveries": delivered,
        "all_delivered": delivered == expected and verify["missing"] == 0,
        "latency": percentiles(latencies),
        "worker_cpu_s": round(w1["worker_cpu_s"] - w0["worker_cpu_s"], 3),
        "worker_cpu_share": round((w1["worker_cpu_s"] - w0["worker_cpu_s"]) / publish_s, 3),
        "fleet_cpu_s": round(w1["fleet_cpu_s"] - w0["fleet_cpu_s"], 3),
        "worker_rss_kib_before": w0["worker_rss_kib"],
        "worker_rss_kib_after": w1["worker_rss_kib"],
        "redis_cpu_s": round(redis1 - redis0, 3),
        "loadgen_cpu_s": round(gen1 - gen0, 3),
        "machine_busy_cpu_s": round(machine1[0] - machine0[0], 2),
        "machine_cpu_s_available": round(machine1[1] - machine0[1], 2),
        "gaps": stats["gaps"],
        "duplicates": stats["duplicates"],
        "verify": verify,
        "server_metrics": metrics_delta(metrics0, metrics1),
        **connection_summary(stats),
    }
    if abuse is not None:
        result["abuser"] = abuse
    return result


def git_state() -> dict[str, Any]:
    """The commit, and the server files that differ from it (what the run measured)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.rstrip()

    changed = git("status", "--porcelain", "--", "socketsrv", "herald_contract", "lua")
    return {
        "git_head": git("rev-parse", "--short", "HEAD"),
        "server_files_uncommitted": [line[3:] for line in changed.splitlines()],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


async def measure(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Both runs of *plan* on one host and one Redis (started in *workdir*); the result."""
    from tests.support.haproxy import short_run_dir
    from tests.support.redis_server import RedisServer

    channels = [f"tag:abuse-good-{i}" for i in range(plan.channels)]
    assignments = [[channels[i % len(channels)]] for i in range(plan.clients)]
    subscribers = dict(Counter(a[0] for a in assignments))
    redis = RedisServer.launch(workdir / "redis", extra_args=["--maxclients", "10000"])
    gen = LoadGenerator(plan.processes, first_source=FIRST_SOURCE)
    run_dir = short_run_dir()
    runs: dict[str, Any] = {}
    result: dict[str, Any] = {}
    context = multiprocessing.get_context("spawn")
    try:
        assert redis.pid is not None
        await gen.start()
        with (
            fleet_host(plan, redis.url, run_dir) as host,
            ProcessPoolExecutor(max_workers=1, mp_context=context) as pool,
        ):
            pool.submit(int, 0).result(timeout=60)  # the abuser process starts before the clock
            await gen.set_adapter(HeraldAdapter(), host.spec.address, host.spec.port)
            opened = await gen.open(
                host.spec.address, host.spec.port, assignments, probe_every=plan.probe_every,
                concurrency=500, timeout_s=plan.open_timeout_s,
            )  # fmt: skip
            result["clients_opened"] = opened["opened"]
            result["open_seconds"] = round(opened["seconds"], 2)
            if opened["opened"] < plan.clients:
                result["note"] = f"opened {opened['opened']} of {plan.clients} clients"
                result["connection_trouble"] = connection_summary(await gen.stats())
            else:
                async with HeraldPublisher(redis.url) as publisher:
                    for n in range(plan.replay_publications):
                        await publisher.publish(REPLAY_CHANNEL, {"n": n, "pad": REPLAY_ITEM})
                    warm = [channels[n % len(channels)] for n in range(2 * len(channels))]
                    for ch in warm:
                        await publisher.publish(ch, data(-1))
                    await wait_delivered(
                        gen, sum(subscribers[ch] for ch in warm), time.monotonic() + 20.0
                    )
                    for name in plan.runs:
                        runs[name] = await run_once(
                            name, gen, publisher, host, subscribers, plan, redis.pid, pool
                        )
            await gen.close_all(timeout_s=20)
    finally:
        await gen.stop()
        redis.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    calm, flood = runs.get("calm"), runs.get("flood")
    return {
        "benchmark": "abuse",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "server_code": proc_measure.server_code_sha(),
        **git_state(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
        "plan": {**asdict(plan), "load_processes": plan.processes},
        "setup": f"{plan.clients} Herald websocket clients from {plan.processes} load processes"
        f" (127.0.0.{FIRST_SOURCE}+), each subscribed to one of {plan.channels} channels;"
        f" publisher.Publisher at {plan.rate_per_s}/s from the coordinator; one redis-server;"
        f" one fleet host on 127.0.0.2 with {plan.workers} worker(s), default limits; the"
        f" abuser ({plan.abusers_per_kind} connections per kind: {', '.join(KINDS)}) from"
        f" {ABUSER_ADDRESS}; everything shares the machine's cores",
        **result,
        "runs": runs,
        "over_calm": {
            name: {
                "latency_p50": ratio(run["latency"]["p50_ms"], calm["latency"]["p50_ms"]),
                "latency_p99": ratio(run["latency"]["p99_ms"], calm["latency"]["p99_ms"]),
            }
            for name, run in runs.items()
            if calm and name != "calm"
        },
        "flood_over_calm": {
            "latency_p50": ratio(flood["latency"]["p50_ms"], calm["latency"]["p50_ms"]),
            "latency_p99": ratio(flood["latency"]["p99_ms"], calm["latency"]["p99_ms"]),
            "worker_cpu_s": ratio(flood["worker_cpu_s"], calm["worker_cpu_s"]),
        }
        if calm and flood
        else None,
    }


def _parser() -> argparse.ArgumentParser:
    d = Plan()
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--channels", type=int, default=d.channels)
    p.add_argument("--rate", type=float, default=d.rate_per_s, help="publications/s")
    p.add_argument("--seconds", type=float, default=d.seconds, help="per run")
    p.add_argument("--probe-every", type=int, default=d.probe_every)
    p.add_argument("--abusers-per-kind", type=int, default=d.abusers_per_kind)
    p.add_argument("--runs", default=",".join(d.runs), help=f"comma-separated, of {list(RUNS)}")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    plan = Plan(
        clients=args.clients, workers=args.workers, channels=args.channels,
        rate_per_s=args.rate, seconds=args.seconds, probe_every=args.probe_every,
        abusers_per_kind=args.abusers_per_kind, runs=tuple(r for r in args.runs.split(",") if r),
    )  # fmt: skip
    unknown = set(plan.runs) - set(RUNS)
    if unknown or "calm" not in plan.runs:
        raise SystemExit(f"runs must include calm and be among {list(RUNS)}: {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="herald-abuse-bench-") as tmp:
        result = asyncio.run(measure(plan, Path(tmp)))
    proc_measure.emit(result, args.out)


if __name__ == "__main__":
    main()
