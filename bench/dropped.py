"""The dropped-message experiment (issue 12): 1% of pub/sub messages lost on the way to a fleet.

    .venv/bin/python -m bench.dropped [--seconds 60] [--clients 200] [--drop 0.01] \
        [--probe-interval 0.5] [--probe-connections 8] [--probe-drop-run 0] \
        [--modes checks_on,checks_off] [--out bench/results/dropped.json]

One run per mode, each on its own redis-server (:class:`tests.support.redis_server.RedisServer`)
and its own fleet (``python -m socketsrv --workers 2``, :class:`tests.support.fleet.Fleet`)
whose every Redis connection goes through a proxy in this process
(:class:`tests.support.tcp_proxy.TcpProxy`) that drops a random *drop* share of the pub/sub
messages it carries to the workers (commands and their replies pass untouched). Redis pub/sub
silently loses them; the publisher (``publisher.Publisher``, straight to Redis) does not know.

*clients* websocket clients (:class:`tests.support.client.HeraldTestClient`) subscribe to
*subscriptions* channels each, out of *channels*, before a publisher publishes *rate*
publications a second on random channels for *seconds* (so most channels are quiet most of
the time, and any channel's last publication may be the one dropped). A client closed by the
server reconnects and resubscribes with recovery, as docs/protocol.md asks.

The run then waits (at most *settle* seconds) until every client holds, on every channel,
every publication exactly once in order, or was told ``recovery: "failed"`` for it. Reported
per mode: publications, messages dropped by the proxy, per (client, channel): complete,
explicit failure, silent loss (missing offsets and never told: must be 0 with position
checks on), duplicates and out-of-order deliveries; publish-to-client latency percentiles
and how many deliveries came over a second late (the repaired ones); and the fleet's
counters (gap repairs, position checks, 4003 closes). ``checks_off`` is the same run with
``position_check_interval_s=0``: the control. The drops stop with the last publication.

The end-to-end prober runs beside the fleet (:mod:`bench.dropped_probes`): a probe every
*probe_interval_s* on *probe_connections* connections, published straight to the same Redis,
so its probes pass through the dropping proxy too; ``--probe-drop-run N`` also drops N
consecutive probes on purpose. Every *sample_every_s* the prober's ``/metrics``, the fleet's
counters and the proxy's drops are sampled: the time series ``series`` of each mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.dropped_probes import ProbeDropper, ProberProcess, sample, workers_hearing_probes
from bench.measure import emit
from publisher.publish import Publisher
from tests.support.client import HeraldTestClient
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer
from tests.support.tcp_proxy import TcpProxy

MODES = ("checks_on", "checks_off")
LATE_S = 1.0
"""A delivery later than this after its publication counts as late (a repaired one)."""
RECONNECT_PAUSE_S = (0.05, 0.5)
"""A client closed by the server waits a random pause in this range before reconnecting."""
FLEET_COUNTERS = (
    "herald_gap_repairs_total",
    "herald_position_checks_total",
    "herald_position_channels_checked_total",
    "herald_position_channels_behind_total",
    "herald_position_repairs_total",
    "herald_recoveries_total",
    "herald_disconnects_total",
    "herald_publications_received_total",
)


@dataclass(frozen=True, slots=True)
class Plan:
    seconds: float = 60.0
    clients: int = 200
    channels: int = 200
    subscriptions: int = 5
    rate: float = 100.0
    """Publications per second, over all channels."""
    drop: float = 0.01
    workers: int = 2
    check_interval_s: float = 5.0
    settle_s: float = 30.0
    """At most this long after the last publication for every client to be whole."""
    seed: int = 12
    probe_interval_s: float = 0.5
    probe_deadline_s: float = 10.0
    probe_connections: int = 8
    probe_drop_run: int = 0
    """Consecutive probes dropped on purpose (besides chance), from the second after the start."""
    sample_every_s: float = 2.0


class TimedClient(HeraldTestClient):
    """A test client that also notes how late each publication arrived, and its closes."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.delays: list[float] = []
        self.closes: list[int | None] = []

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "pub" and isinstance(frame.get("data"), dict):
            self.delays.append(time.time() - frame["data"]["t"])
        await super()._on_frame(frame)


def channel_name(n: int) -> str:
    return f"question:{n + 1}"


def channels_of(index: int, plan: Plan) -> list[str]:
    step = max(1, plan.channels // plan.subscriptions)
    return [channel_name((index + j * step) % plan.channels) for j in range(plan.subscriptions)]


async def keep_connected(client: TimedClient, stop: asyncio.Event) -> None:
    """Reconnect with recovery whenever the server closes the client, until *stop*."""
    while not stop.is_set():
        assert client.closed is not None
        closed = client.closed
        waiter: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        pending: list[asyncio.Future[Any]] = [closed, waiter]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if stop.is_set():
            return
        client.closes.append(closed.result()[0])
        await asyncio.sleep(random.uniform(*RECONNECT_PAUSE_S))
        with contextlib.suppress(Exception):  # tried again after the next pause
            await client.reconnect()


def account(clients: list[TimedClient], published: dict[str, list[int]]) -> dict[str, Any]:
    """Per (client, channel): complete, explicit failure or silent loss; duplicates; order."""
    counts = {"complete": 0, "failed_explicit": 0, "silent_loss": 0}
    duplicates = out_of_order = missing = 0
    for client in clients:
        for name, log in client.channels.items():
            offsets = [offset for _, offset, _ in log.received]
            duplicates += len(offsets) - len(set(offsets))
            out_of_order += sum(1 for a, b in itertools.pairwise(offsets) if b <= a)
            lacking = set(published.get(name, [])) - set(offsets)
            if not lacking:
                counts["complete"] += 1
            elif "failed" in log.recoveries:
                counts["failed_explicit"] += 1
            else:
                counts["silent_loss"] += 1
                missing += len(lacking)
    return {
        **counts,
        "missing_publications_silently": missing,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
    }


def whole(clients: list[TimedClient], published: dict[str, list[int]]) -> bool:
    return bool(account(clients, published)["silent_loss"] == 0)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fleet_counters(fleet: Fleet) -> dict[str, float]:
    """The fleet's counters named in :data:`FLEET_COUNTERS`, summed over its workers."""
    status, body = fleet.http_get("/metrics", timeout_s=5.0)
    found: dict[str, float] = {}
    if status != 200:
        return found
    for line in body.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        if sample.split("{", 1)[0] in FLEET_COUNTERS:
            found[sample] = found.get(sample, 0.0) + float(value)
    return found


async def publish_for(
    plan: Plan, redis_url: str, rng: random.Random
) -> tuple[dict[str, list[int]], int]:
    """Publish at *plan.rate* for *plan.seconds*: the offsets published per channel, errors."""
    published: dict[str, list[int]] = {}
    errors = 0
    period_s = 1.0 / plan.rate
    async with Publisher(redis_url) as publisher:
        began = time.monotonic()
        n = 0
        while (now := time.monotonic()) - began < plan.seconds:
            due = began + n * period_s
            if due > now:
                await asyncio.sleep(due - now)
            name = channel_name(rng.randrange(plan.channels))
            try:
                result = await publisher.publish(name, {"t": time.time(), "n": n})
            except Exception:  # noqa: BLE001 - counted and reported
                errors += 1
            else:
                published.setdefault(name, []).append(result.position.offset)
            n += 1
    return published, errors


async def sample_every(
    plan: Plan,
    began: float,
    prober: ProberProcess,
    fleet: Fleet,
    proxy: TcpProxy,
    dropper: ProbeDropper,
    samples: list[dict[str, Any]],
) -> None:
    """Append a sample of the prober, the fleet and the proxy every *plan.sample_every_s*."""
    for n in itertools.count():
        due = began + n * plan.sample_every_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        samples.append(await take_sample(began, prober, fleet, proxy, dropper))


async def take_sample(
    began: float, prober: ProberProcess, fleet: Fleet, proxy: TcpProxy, dropper: ProbeDropper
) -> dict[str, Any]:
    at_s = time.monotonic() - began
    dropped = len(proxy.dropped)
    return await asyncio.to_thread(
        sample, at_s, prober, lambda: fleet_counters(fleet), dropped, dropper
    )


async def run_mode(plan: Plan, mode: str, workdir: Path) -> dict[str, Any]:
    rng = random.Random(plan.seed)
    dropper = ProbeDropper(plan.drop, random.Random(plan.seed + 1))
    server = RedisServer.launch(workdir / f"redis-{mode}")
    interval_s = plan.check_interval_s if mode == "checks_on" else 0.0
    clients: list[TimedClient] = []
    stop = asyncio.Event()
    keepers: list[asyncio.Task[None]] = []
    samples: list[dict[str, Any]] = []
    sampling: asyncio.Future[None] | None = None
    try:
        async with TcpProxy(server.port) as proxy:
            proxy.drop_messages(dropper)  # nothing until dropper.start()
            fleet = Fleet(
                redis_url=proxy.url,
                workers=plan.workers,
                log=workdir / f"fleet-{mode}.log",
                HERALD_POSITION_CHECK_INTERVAL_S=str(interval_s),
            )
            prober: ProberProcess | None = None
            try:
                await asyncio.to_thread(fleet.wait_ready, 60.0)
                prober = ProberProcess(
                    redis_url=server.url,
                    fleet_url=fleet.url,
                    interval_s=plan.probe_interval_s,
                    deadline_s=plan.probe_deadline_s,
                    connections=plan.probe_connections,
                    log=workdir / f"prober-{mode}.log",
                )
                for index in range(plan.clients):
                    client = TimedClient(fleet.url)
                    await client.open()
                    for name in channels_of(index, plan):
                        await client.subscribe(name)
                    clients.append(client)
                probes_live = await asyncio.to_thread(prober.wait_live, 30.0)
                hearing = await workers_hearing_probes(server.url)
                keepers = [asyncio.ensure_future(keep_connected(c, stop)) for c in clients]
                began = time.monotonic()
                dropper.start()
                if plan.probe_drop_run:
                    dropper.drop_run(plan.probe_drop_run)
                sampling = asyncio.ensure_future(
                    sample_every(plan, began, prober, fleet, proxy, dropper, samples)
                )
                published, errors = await publish_for(plan, server.url, rng)
                proxy.drop_messages(None)
                drops_ended = time.monotonic()
                settle_began = time.monotonic()
                while time.monotonic() - settle_began < plan.settle_s:
                    if whole(clients, published):
                        break
                    await asyncio.sleep(0.1)
                settled_s = time.monotonic() - settle_began
                # A probe dropped last is received or counted missed by the prober within
                # its deadline and one probe interval (its expiry runs once per probe).
                resolved = drops_ended + plan.probe_deadline_s + 2 * plan.probe_interval_s
                await asyncio.sleep(max(0.0, resolved - time.monotonic()))
                sampling.cancel()
                samples.append(await take_sample(began, prober, fleet, proxy, dropper))
                delays = [d for c in clients for d in c.delays]
                closes: dict[str, int] = {}
                for client in clients:
                    for code in client.closes:
                        closes[str(code)] = closes.get(str(code), 0) + 1
                return {
                    "position_check_interval_s": interval_s,
                    "publications": sum(len(v) for v in published.values()),
                    "publish_errors": errors,
                    "channels_published": len(published),
                    "messages_forwarded": proxy.forwarded_messages,
                    "messages_dropped": len(proxy.dropped),
                    "client_channels": sum(len(c.channels) for c in clients),
                    "accounting": account(clients, published),
                    "settled_s": round(settled_s, 2),
                    "deliveries": len(delays),
                    "latency_s": {
                        "p50": percentile(delays, 0.5),
                        "p99": percentile(delays, 0.99),
                        "max": max(delays, default=None),
                    },
                    f"deliveries_later_than_{LATE_S:g}_s": sum(1 for d in delays if d > LATE_S),
                    "client_closes_by_code": closes,
                    "fleet": await asyncio.to_thread(fleet_counters, fleet),
                    "probe": {
                        "connections_live_before_drops": probes_live,
                        "workers_hearing_probes": hearing,
                        "drops_ended_s": round(drops_ended - began, 2),
                        "chosen_drop_run": list(dropper.chosen),
                        "dropped_probes_seq_at_s": dropper.dropped_probes,
                        "final": samples[-1]["probe"],
                    },
                    "series": samples,
                }
            finally:
                if sampling is not None:
                    sampling.cancel()
                    await asyncio.gather(sampling, return_exceptions=True)
                stop.set()
                await asyncio.gather(*keepers, return_exceptions=True)
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
                if prober is not None:
                    await asyncio.to_thread(prober.close)
                await asyncio.to_thread(fleet.terminate, 30.0)
    finally:
        server.close()


async def measure(plan: Plan, modes: list[str], workdir: Path) -> dict[str, Any]:
    runs = {mode: await run_mode(plan, mode, workdir) for mode in modes}
    return {
        "experiment": "dropped",
        "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.dropped", description=__doc__.split("\n")[0])
    defaults = Plan()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--channels", type=int, default=defaults.channels)
    parser.add_argument("--subscriptions", type=int, default=defaults.subscriptions)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--drop", type=float, default=defaults.drop)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--check-interval", type=float, default=defaults.check_interval_s)
    parser.add_argument("--settle", type=float, default=defaults.settle_s)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--probe-interval", type=float, default=defaults.probe_interval_s)
    parser.add_argument("--probe-deadline", type=float, default=defaults.probe_deadline_s)
    parser.add_argument("--probe-connections", type=int, default=defaults.probe_connections)
    parser.add_argument("--probe-drop-run", type=int, default=defaults.probe_drop_run)
    parser.add_argument("--sample-every", type=float, default=defaults.sample_every_s)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise SystemExit(f"--modes: choose among {', '.join(MODES)}")
    if not 0 <= args.drop <= 1 or args.rate <= 0 or args.seconds <= 0:
        raise SystemExit("--drop must be in [0, 1]; --rate and --seconds above 0")
    if args.subscriptions > args.channels:
        raise SystemExit("--subscriptions cannot exceed --channels")
    if min(args.probe_interval, args.probe_deadline, args.sample_every) <= 0:
        raise SystemExit("--probe-interval, --probe-deadline and --sample-every must be above 0")
    if not 1 <= args.probe_connections <= 100 or args.probe_drop_run < 0:
        raise SystemExit("--probe-connections must be 1 to 100; --probe-drop-run 0 or more")
    plan = Plan(
        seconds=args.seconds,
        clients=args.clients,
        channels=args.channels,
        subscriptions=args.subscriptions,
        rate=args.rate,
        drop=args.drop,
        workers=args.workers,
        check_interval_s=args.check_interval,
        settle_s=args.settle,
        seed=args.seed,
        probe_interval_s=args.probe_interval,
        probe_deadline_s=args.probe_deadline,
        probe_connections=args.probe_connections,
        probe_drop_run=args.probe_drop_run,
        sample_every_s=args.sample_every,
    )
    with tempfile.TemporaryDirectory(prefix="herald-dropped-") as tmp:
        result = asyncio.run(measure(plan, modes, Path(tmp)))
    emit(result, args.out)


if __name__ == "__main__":
    main()
