"""The soak (issue 12): a fleet under the Q&A traffic model for ten minutes or an hour, with
churn, slow readers, a Redis restart and a worker kill, watched for anything that keeps growing.

    .venv/bin/python -m bench.soak --out bench/results/soak.json --report   # 10 minutes
    .venv/bin/python -m bench.soak --hour --out /tmp/soak-hour.json          # an hour
    .venv/bin/python -m bench.soak --report-only bench/results/soak.json     # SOAK.md again

One redis-server (:class:`tests.support.redis_server.RedisServer`), one fleet
(``python -m socketsrv --workers W``, :class:`tests.support.fleet.Fleet`) and P load processes
(bench/loadgen/, with the soak's commands from bench/soak_load.py), each bound to its own
loopback source, hold *tabs* long-lived clients with the Q&A population's channels
(bench/workload.py: a question page each, some on ``questions:new``, half logged in on their
``user:`` channel). First every channel of the population is published to once, so Redis
holds each channel's keys before the baseline. Then, for *warmup* + *seconds*:

* the Q&A mix is published at its nominal rate through the real path
  (``publisher.Publisher``), each channel's last (epoch, offset) kept;
* *churn* short-lived clients a second connect, subscribe and close (bench/loadgen/churn.py);
* *slow_share* of the clients at any time stop reading for a random 5-40 s, then resume;
* every long-lived client the server closes (a killed worker, 4002 for a heartbeat a slow
  reader did not answer, 4007 shedding, 4001) reconnects with recovery, as
  docs/protocol.md asks: after the close's ``retry_ms`` hint when it has one; a subscribe
  refused with 429, 500 or 503 is sent again on its connection after a jittered backoff
  (bench/soak_load.py);
* at 35% of *seconds* Redis restarts keeping its data (``SHUTDOWN SAVE``, started again on the
  same port), at 65% one worker gets SIGKILL (the supervisor starts another).

Every *sample_every* seconds: the workers' RSS and open descriptors (/proc), the fleet's
gauges (``herald_channels_subscribed``: the hub's bus channels; connections, subscriptions),
Redis's pub/sub channels (INFO), subscriptions (PUBSUB NUMSUB summed over PUBSUB CHANNELS),
shard channels (INFO ``pubsub_shardchannels``), keys (DBSIZE) and memory, and the clients'
counts. A resource "after warm-up" is the median of the last three samples of the warm-up;
"at the end" the median of the last three before the traffic stops. The soak passes a
resource when they differ by at most :data:`TOLERANCE`. After the traffic stops, the run
waits (at most *settle* seconds) until every (client, channel) holds every publication since
it subscribed up to the channel's last one, or was told its recovery failed; what is left is
a silent loss (bench/soak_load.py: ``classify``). Each loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.loadgen.churn import ChurnPlan
from bench.loadgen.herald import EdDSATokens
from bench.measure import descendants, emit, machine_busy_s, rss_kib
from bench.scenarios.publishing import data
from bench.soak_load import SoakAdapter, SoakGenerator, Top
from bench.workload import NOMINAL, Population, Rates
from publisher.publish import Publisher
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer

HOST = "127.0.0.1"
TOLERANCE = 0.05
RESOURCES = {
    "worker_rss_mib": "workers' RSS (MiB, summed)",
    "worker_fds": "workers' open descriptors (summed)",
    "hub_channels": "hub channels on the bus (herald_channels_subscribed)",
    "redis_pubsub_channels": "Redis pub/sub channels (INFO pubsub_channels)",
    "redis_pubsub_subscriptions": "Redis pub/sub subscriptions (PUBSUB NUMSUB, summed)",
    "redis_keys": "Redis keys (DBSIZE)",
}
FLEET_GAUGES = {
    "hub_channels": "herald_channels_subscribed",
    "fleet_connections": "herald_connections_open",
    "fleet_subscriptions": "herald_subscriptions_open",
}
CHURN_CHUNK_S = 30.0
MAX_IN_FLIGHT = 64
"""Publications in flight at once (the publisher's bound)."""


@dataclass(frozen=True, slots=True)
class Plan:
    tabs: int = 20_000
    workers: int = 3
    load_processes: int = 3
    warmup_s: float = 90.0
    seconds: float = 600.0
    """The soak after the warm-up (``--hour``: 3600)."""
    rate_multiplier: float = 1.0
    """Times the Q&A model's nominal rate for *tabs* (the smoke test raises it)."""
    churn_per_s: float = 100.0
    slow_share: float = 0.02
    slow_pause_s: tuple[float, float] = (5.0, 40.0)
    redis_restart_at: float = 0.35
    worker_kill_at: float = 0.65
    sample_every_s: float = 5.0
    settle_s: float = 120.0
    open_timeout_s: float = 300.0
    seed: int = 12


class TopPublisher:
    """Publishes the Q&A mix (at most :data:`MAX_IN_FLIGHT` at once) and keeps each channel's
    last position: what every subscriber must end at."""

    def __init__(self, publisher: Publisher, population: Population) -> None:
        self.publisher = publisher
        self.population = population
        self.tops: dict[str, Top] = {}
        self.published = 0
        self.failed = 0
        self._gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, channel: str) -> None:
        try:
            result = await self.publisher.publish(channel, data(self.published + self.failed))
        except Exception:  # noqa: BLE001 - counted: a publication Redis did not confirm
            self.failed += 1
        else:
            self.published += 1
            epoch, offset = result.position.epoch, result.position.offset
            top = self.tops.get(channel)
            # The highest offset, not the last answer: Redis restarts keeping its data (the
            # offsets go on in a new epoch), and an answer of the old epoch may come late.
            if top is None or offset > top[1]:
                self.tops[channel] = (epoch, offset)
        finally:
            self._gate.release()

    async def _launch(self, channel: str) -> None:
        await self._gate.acquire()
        task = asyncio.ensure_future(self._one(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def prime(self) -> None:
        """One publication on every channel of the population."""
        for channel in sorted(self.population.subscribers):
            await self._launch(channel)
        await self.drain()

    async def run(self, rates: Rates, duration_s: float, stop: asyncio.Event) -> None:
        """The mix at *rates* for *duration_s* or until *stop*."""
        per_s = rates.total_per_s
        started = time.monotonic()
        sent = 0
        while not stop.is_set() and (now := time.monotonic()) - started < duration_s:
            due = int((now - started) * per_s)
            while sent < due and not stop.is_set():
                await self._launch(self.population.draw_event(rates))
                sent += 1
            await asyncio.sleep(0.01)
        await self.drain()

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30.0)


def worker_pids(root: int) -> list[int]:
    """The fleet's workers: the supervisor's descendants but multiprocessing's helper."""
    out = []
    for pid in descendants(root)[1:]:
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
    return out


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def fleet_gauges(fleet: Fleet) -> dict[str, float | None]:
    found: dict[str, float | None] = dict.fromkeys(FLEET_GAUGES)
    with contextlib.suppress(OSError):
        status, body = fleet.http_get("/metrics", timeout_s=5.0)
        if status == 200:
            names = {v: k for k, v in FLEET_GAUGES.items()}
            for line in body.decode().splitlines():
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name in names:
                    key = names[name]
                    found[key] = (found[key] or 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def redis_sample(redis: Any) -> dict[str, float | None]:
    keys = ("redis_keys", "redis_pubsub_channels", "redis_pubsub_subscriptions",
            "redis_shard_channels", "redis_used_memory_mib", "redis_clients")  # fmt: skip
    out: dict[str, float | None] = dict.fromkeys(keys)
    try:
        out["redis_keys"] = redis.dbsize()
        stats, memory = redis.info("stats"), redis.info("memory")
        out["redis_pubsub_channels"] = stats["pubsub_channels"]
        out["redis_shard_channels"] = stats.get("pubsub_shardchannels", 0)
        out["redis_used_memory_mib"] = round(memory["used_memory"] / 2**20, 1)
        out["redis_clients"] = redis.info("clients")["connected_clients"]
        names = redis.pubsub_channels()
        subscriptions = 0
        for i in range(0, len(names), 1000):
            subscriptions += sum(n for _, n in redis.pubsub_numsub(*names[i : i + 1000]))
        out["redis_pubsub_subscriptions"] = subscriptions
    except Exception:  # noqa: BLE001 - Redis restarting: this sample has no Redis figures
        pass
    return out


def sample(fleet: Fleet, redis: Any) -> dict[str, Any]:
    pids = worker_pids(fleet.process.pid)
    return {
        "workers": len(pids),
        "worker_pids": pids,
        "worker_rss_mib": round(sum(rss_kib(p) for p in pids) / 1024, 1),
        "worker_fds": sum(open_fds(p) for p in pids),
        **fleet_gauges(fleet),
        **redis_sample(redis),
    }


class Soak:
    """One run of *plan* (module docstring); :meth:`run` once."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.samples: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.began = 0.0
        self.phase = "open"

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] soak: {text}", file=sys.stderr, flush=True)

    def event(self, what: str, **details: Any) -> None:
        self.events.append({"t_s": round(time.monotonic() - self.began, 1), "what": what,
                            **details})  # fmt: skip
        self.log(f"{what} {details or ''}")

    async def _sampler(
        self, gen: SoakGenerator, fleet: Fleet, redis: Any, stop: asyncio.Event
    ) -> None:
        limit = time.monotonic() + self.plan.warmup_s + self.plan.seconds + self.plan.settle_s + 600
        while not stop.is_set() and time.monotonic() < limit:
            tick = time.monotonic()
            row = await asyncio.to_thread(sample, fleet, redis)
            with contextlib.suppress(Exception):
                progress = await gen.progress()
                row["clients_open"], row["clients_ready"] = progress["open"], progress["ready"]
            row["t_s"] = round(tick - self.began, 1)
            row["phase"] = self.phase
            self.samples.append(row)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(
                    max(0.0, tick + self.plan.sample_every_s - time.monotonic())
                ):
                    await stop.wait()

    async def _faults(self, server: RedisServer, fleet: Fleet) -> None:
        plan = self.plan
        at = sorted(
            [(plan.redis_restart_at, "redis_restart"), (plan.worker_kill_at, "worker_kill")]
        )
        start = self.began + plan.warmup_s
        for fraction, what in at:
            await asyncio.sleep(max(0.0, start + fraction * plan.seconds - time.monotonic()))
            if what == "redis_restart":
                t0 = time.monotonic()
                await asyncio.to_thread(server.restart, True)
                self.event("redis_restart", keep_data=True, down_s=round(time.monotonic() - t0, 2))
            else:
                pids = worker_pids(fleet.process.pid)
                victim = random.Random(plan.seed).choice(pids)
                os.kill(victim, signal.SIGKILL)
                self.event("worker_kill", pid=victim, workers_before=pids)

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        tokens = EdDSATokens()
        pop = Population(plan.tabs, seed=plan.seed)
        server = RedisServer.launch(self.workdir / "redis")
        fleet = Fleet(
            redis_url=server.url, workers=plan.workers, log=self.workdir / "fleet.log",
            HERALD_LOG_LEVEL="WARNING", HERALD_JWT_PUBLIC_KEY_PEM=tokens.public_pem,
        )  # fmt: skip
        gen = SoakGenerator(plan.load_processes)
        redis = server.client()
        try:
            await asyncio.to_thread(fleet.wait_ready, 60.0)
            await gen.start()
            await gen.set_adapter(SoakAdapter(tokens), HOST, fleet.port)
            self.began = time.monotonic()
            opened = await gen.open(HOST, fleet.port, pop.assignments,
                                    timeout_s=plan.open_timeout_s, concurrency=600)  # fmt: skip
            self.event("opened", **opened)
            async with Publisher(server.url) as publisher:
                return await self._traffic(plan, pop, gen, fleet, server, redis, publisher, opened)
        finally:
            # A teardown that goes wrong (a fleet draining 20,000 clients on a loaded machine
            # outlasts its 30 s) must not cost the measurements: everything here is stopped
            # by force after it.
            with contextlib.suppress(Exception):
                await gen.close_all(timeout_s=20.0)
            with contextlib.suppress(Exception):
                await gen.stop()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(fleet.terminate, 60.0)
            fleet.close()
            server.close()

    async def _traffic(
        self, plan: Plan, pop: Population, gen: SoakGenerator, fleet: Fleet,
        server: RedisServer, redis: Any, publisher: Publisher, opened: Any,
    ) -> dict[str, Any]:  # fmt: skip
        pub = TopPublisher(publisher, pop)
        stop_sampling, stop_publishing = asyncio.Event(), asyncio.Event()
        sampler = asyncio.ensure_future(self._sampler(gen, fleet, redis, stop_sampling))
        await pub.prime()
        self.event("primed", channels=len(pub.tops), failed=pub.failed)
        traffic_s = plan.warmup_s + plan.seconds
        rates = NOMINAL.scaled(pop.tabs, plan.rate_multiplier)
        busy0, began_traffic = machine_busy_s(), time.monotonic()
        self.began = began_traffic  # the time axis starts with the traffic
        self.samples.clear()
        self.phase = "warmup"
        mending = asyncio.ensure_future(
            gen.mend(HOST, fleet.port, traffic_s + plan.settle_s + 60.0, 600)
        )
        slowing = asyncio.ensure_future(gen.slow(traffic_s, plan.slow_share, plan.slow_pause_s))
        churning = asyncio.ensure_future(self._churn(gen, fleet.port, traffic_s))
        publishing = asyncio.ensure_future(pub.run(rates, traffic_s, stop_publishing))
        tasks: list[asyncio.Future[Any]] = [mending, slowing, churning, publishing]
        faults = asyncio.ensure_future(self._faults(server, fleet))
        try:
            await asyncio.sleep(plan.warmup_s)
            self.phase = "soak"
            self.event("warmed_up")
            await asyncio.sleep(max(0.0, began_traffic + traffic_s - time.monotonic()))
            await faults
            self.phase = "settle"
            self.event("traffic_stopped", published=pub.published, publish_failed=pub.failed)
            stop_publishing.set()
            await gen.halt("slow")
            await publishing
            slow = await _outcome(slowing)
            churned = await _outcome(churning)
            accounting = await self._settle(gen, pub)
            await gen.halt("mend")
            mended = await _outcome(mending)
            stats = await gen.stats()
        finally:
            faults.cancel()
            stop_publishing.set()
            stop_sampling.set()
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(sampler, *tasks, return_exceptions=True)
        busy = machine_busy_s() - busy0
        elapsed = time.monotonic() - began_traffic
        return {
            "experiment": "soak",
            "plan": asdict(plan),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_at_end": os.getloadavg(),
                "machine_busy_share": round(busy / max(elapsed * (os.cpu_count() or 1), 1e-9), 3),
            },
            "population": {
                "tabs": pop.tabs,
                "questions": pop.questions,
                "subscriptions": sum(pop.subscribers.values()),
            },
            "publish_per_s": round(rates.total_per_s, 2),
            "opened": opened,
            "published": pub.published,
            "publish_failed": pub.failed,
            "channels_published": len(pub.tops),
            "churn": churned,
            "slow_readers": slow,
            "reconnects": mended,
            "client_closes_by_code": stats["closes"],
            "client_errors_by_code": stats["adapter_error_codes"],
            "connect_failures": stats["connect_failures"],
            "handshake_failures": stats["handshake_failures"],
            "lost_unexpectedly": stats["lost_unexpectedly"],
            "recoveries": {"recovered": stats["recovered"], "failed": stats["recovery_failed"]},
            "accounting": accounting,
            "events": self.events,
            "verdict": verdict(self.samples, accounting),
            "samples": self.samples,
        }

    async def _churn(self, gen: SoakGenerator, port: int, duration_s: float) -> dict[str, Any]:
        """Churn for *duration_s* in chunks of :data:`CHURN_CHUNK_S`: a loaded machine makes a
        churn command run up to half as long again as asked (bench/loadgen/churn.py), and a
        short one stays within the time the load processes are given to answer."""
        totals: dict[str, Any] = {"launched": 0, "completed": 0, "failed": 0, "errors": {},
                                  "chunks": 0, "seconds": 0.0}  # fmt: skip
        end = time.monotonic() + duration_s
        while (left := end - time.monotonic()) > 1.0:
            chunk = min(CHURN_CHUNK_S, left)
            reply = await gen.churn(HOST, port, ChurnPlan(
                ("question:2", "questions:new"), rate_per_s=self.plan.churn_per_s,
                duration_s=chunk, max_count=max(1, int(self.plan.churn_per_s * chunk)),
                concurrency=300,
            ))  # fmt: skip
            totals["chunks"] += 1
            totals["seconds"] += reply["seconds"]
            for key in ("launched", "completed", "failed"):
                totals[key] += reply[key]
            for key, n in reply["errors"].items():
                totals["errors"][key] = totals["errors"].get(key, 0) + n
        totals["achieved_per_s"] = round(totals["completed"] / max(totals["seconds"], 1e-9), 1)
        return totals

    async def _settle(self, gen: SoakGenerator, pub: TopPublisher) -> Any:
        """Until every client is whole (or explicitly failed), at most ``settle_s``."""
        began = time.monotonic()
        deadline = began + self.plan.settle_s
        progress: list[tuple[float, int, int]] = []
        """(seconds into the settle, clients not ready, silent losses) every few seconds: a
        settle that ends while they still fall was too short, one that ends flat is stuck."""
        while True:
            accounting = await gen.account(pub.tops)
            now = time.monotonic()
            row = (
                round(now - began, 1),
                accounting["clients_not_ready"],
                accounting["silent_loss"],
            )
            if not progress or now - began - progress[-1][0] >= 5.0 or row[1:] != progress[-1][1:]:
                progress.append(row)
            if accounting["silent_loss"] == 0 or now >= deadline:
                accounting["settle_progress"] = progress
                details = {k: v for k, v in accounting.items() if not isinstance(v, list)}
                self.event("settled", **details)
                return accounting
            await asyncio.sleep(1.0)


async def _outcome(task: asyncio.Future[Any]) -> Any:
    """The task's reply, or its error: a load command that failed late costs its counts,
    never the run's other figures."""
    try:
        return await task
    except Exception as exc:  # noqa: BLE001 - recorded in the results
        return {"error": f"{type(exc).__name__}: {exc}"}


def _median_of_last(samples: list[dict[str, Any]], key: str, phase: str) -> float | None:
    values = [s[key] for s in samples if s["phase"] == phase and s.get(key) is not None]
    return statistics.median(values[-3:]) if values else None


def verdict(samples: list[dict[str, Any]], accounting: Any) -> dict[str, Any]:
    """Each resource after warm-up and at the end, and whether it stayed within
    :data:`TOLERANCE`; whether nothing was lost silently."""
    out: dict[str, Any] = {}
    for key in RESOURCES:
        base = _median_of_last(samples, key, "warmup")
        end = _median_of_last(samples, key, "soak")
        change = None if not base or end is None else (end - base) / base
        out[key] = {
            "after_warmup": base,
            "at_end": end,
            "change": None if change is None else round(change, 4),
            "within": change is not None and abs(change) <= TOLERANCE,
        }
    out["nothing_lost"] = {"within": accounting["silent_loss"] == 0}
    return out


def print_verdict(result: dict[str, Any]) -> None:
    for key, v in result["verdict"].items():
        mark = "PASS" if v["within"] else "FAIL"
        if key == "nothing_lost":
            a = result["accounting"]
            print(f"[{mark}] every client whole or told: {a['complete']} complete, "
                  f"{a['failed_explicit']} failed explicitly, {a['silent_loss']} silent losses "
                  f"of {a['client_channels']} (client, channel)", file=sys.stderr)  # fmt: skip
            continue
        change = "n/a" if v["change"] is None else f"{100 * v['change']:+.1f}%"
        print(f"[{mark}] {RESOURCES[key]}: {v['after_warmup']} after warm-up, {v['at_end']} at "
              f"the end ({change}, bound ±{100 * TOLERANCE:.0f}%)", file=sys.stderr)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    d = Plan()
    parser.add_argument("--hour", action="store_true", help="soak for 3600 s after warm-up")
    parser.add_argument("--seconds", type=float, default=d.seconds)
    parser.add_argument("--warmup", type=float, default=d.warmup_s)
    parser.add_argument("--tabs", type=int, default=d.tabs)
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--load-processes", type=int, default=d.load_processes)
    parser.add_argument("--rate-multiplier", type=float, default=d.rate_multiplier)
    parser.add_argument("--churn", type=float, default=d.churn_per_s)
    parser.add_argument("--slow-share", type=float, default=d.slow_share)
    parser.add_argument("--slow-pause", type=float, nargs=2, default=d.slow_pause_s)
    parser.add_argument("--sample-every", type=float, default=d.sample_every_s)
    parser.add_argument("--settle", type=float, default=d.settle_s)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--out", type=Path, default=None, help="the results JSON")
    parser.add_argument("--report", action="store_true", help="SOAK.md + plot beside --out")
    parser.add_argument("--report-only", type=Path, default=None, metavar="JSON")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.report_only is not None:
        from bench.soak_report import write_report

        print(write_report(args.report_only))
        return
    seconds = 3600.0 if args.hour else args.seconds
    low, high = args.slow_pause
    problems = [
        text for bad, text in (
            (args.tabs < 1 or args.workers < 1 or args.load_processes < 1,
             "--tabs, --workers and --load-processes must be at least 1"),
            (seconds <= 0 or args.warmup <= 0 or args.sample_every <= 0 or args.settle <= 0,
             "--seconds, --warmup, --sample-every and --settle must be above 0"),
            (args.churn < 0 or args.rate_multiplier <= 0,
             "--churn must be at least 0 and --rate-multiplier above 0"),
            (not 0 <= args.slow_share <= 1, "--slow-share must be in [0, 1]"),
            (not 0 < low <= high, "--slow-pause takes LOW HIGH with 0 < LOW <= HIGH"),
            (args.report and args.out is None, "--report needs --out"),
        ) if bad
    ]  # fmt: skip
    if problems:
        raise SystemExit("; ".join(problems))
    plan = Plan(
        tabs=args.tabs, workers=args.workers, load_processes=args.load_processes,
        warmup_s=args.warmup, seconds=seconds, rate_multiplier=args.rate_multiplier,
        churn_per_s=args.churn, slow_share=args.slow_share, slow_pause_s=(low, high),
        sample_every_s=args.sample_every, settle_s=args.settle, seed=args.seed,
    )  # fmt: skip
    import uvloop

    with tempfile.TemporaryDirectory(prefix="herald-soak-") as tmp:
        result = uvloop.run(Soak(plan, Path(tmp)).run())
    emit(result, args.out)
    print_verdict(result)
    if args.report:
        from bench.soak_report import write_report

        print(write_report(args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
