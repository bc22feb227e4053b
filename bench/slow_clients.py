"""The slow-client experiment (issue 12, item 1): some clients stop reading, then resume.

    .venv/bin/python -m bench.slow_clients [--scale quick|issue|smoke] \
        [--code DIR] [--label NAME] [--out bench/results/slow.json]

One redis-server (:class:`tests.support.redis_server.RedisServer`), one fleet worker
(``python -m socketsrv --workers 1`` run from *--code*: this checkout, or a ``git worktree``
of the commit before paced replays for the "before" figures) and N websocket clients in two
load processes bound to 127.0.0.10, .11, ..., all subscribed to one channel. A publisher
(``publisher.Publisher``, the real publish path) publishes ``item_bytes`` publications at
``rate_per_s``. After ``lead_s``, ``slow`` of the clients stop reading their socket
(``transport.pause_reading``; their receive buffer is ``slow_rcvbuf`` bytes, a slow link's
window) for ``stop_s``, then read again. Every client behaves as docs/protocol.md asks: it
keeps its position, answers heartbeats, and after any close reconnects (after a jittered
0-0.5 s) and resubscribes with recovery; a ``failed`` recovery takes the reply's position.

Reported per run: closes by code (4001 is the figure), recoveries by result, for each slow
client the time from resuming to holding every publication published up to that moment
("catch-up"), the fast clients' publish-to-receive latency (p50/p99/max, all run and during
the catch-up window), every client's accounting (duplicates, gaps, final offset against the
last published), and the worker's RSS: before publishing, while publishing before anyone
stops, at its peak, 10 s and 60 s after the last slow client caught up, and ``settle_s`` after
the last publication (``--probe`` also records the worker's heap, bench/heap_probe.py).
Each run is bounded in time (the schedule) and in connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import measure

CHANNEL = "questions:new"
HOST = "127.0.0.2"
FIRST_SOURCE = 10
PROCESSES = 2


@dataclass(frozen=True)
class Plan:
    clients: int = 200
    slow: int = 20
    item_bytes: int = 32 * 1024
    rate_per_s: float = 10.0
    lead_s: float = 3.0
    stop_s: float = 30.0
    """Long enough for the publications a slow client leaves unread to fill the kernel's
    buffers (about 4 MiB on loopback) and then ``outbox_max_bytes``."""
    catch_up_s: float = 30.0
    """Publishing goes on this long after the slow clients resume."""
    settle_s: float = 60.0
    """The run goes on this long after the last publication (the worker's RSS is sampled
    every 0.5 s throughout; the summary reads it 10 s and 60 s after the last slow client
    caught up, which this leaves room for when catch-up takes under ``catch_up_s``)."""
    slow_rcvbuf: int = 64 * 1024
    laggards: int = 0
    """Of the slow clients, how many read at most ``laggard_bytes_per_s`` once they resume (a
    slow link): their paced replays are still running at the end of the run, after the other
    slow clients caught up. They are left out of the catch-up figures."""
    laggard_bytes_per_s: int = 160 * 1024
    """Fast enough to stay within the history while publishing goes on (10 x 32 KiB/s at the
    quick scale), too slow to finish the replay before the run ends."""
    server_env: tuple[tuple[str, str], ...] = (
        ("HERALD_REPLAY_BURST_BYTES", str(64 * 1024 * 1024)),
        ("HERALD_ADDRESS_REPLAY_BURST_BYTES", str(1024 * 1024 * 1024)),
    )
    """The replay budget raised above every replay of the run, so that what is measured is
    how a replay is written, not the budget (which refuses a replay before it starts)."""


SCALES = {
    "smoke": Plan(
        clients=20, slow=4, rate_per_s=8.0, lead_s=1.0, stop_s=3.0, catch_up_s=6.0, settle_s=2.0
    ),
    "quick": Plan(),
    "issue": Plan(
        clients=1000,
        slow=100,
        rate_per_s=6.0,
        lead_s=5.0,
        stop_s=60.0,
        catch_up_s=60.0,
        settle_s=70.0,
    ),
}

_OFFSET = re.compile(rb'"offset":(\d+)')
_T = re.compile(rb'"t":([0-9.]+)')
_RECOVERY = re.compile(rb'"recovery":"(\w+)"')
_EPOCH = re.compile(rb'"epoch":"([^"]*)"')


# --- one client -------------------------------------------------------------------------


class Client(asyncio.Protocol):
    """A raw websocket client of protocol v1 (JSON) that records what it got."""

    def __init__(self, run: ClientRun, index: int, slow: bool, laggard: bool = False) -> None:
        self.run, self.index, self.slow, self.laggard = run, index, slow, laggard
        self.window_end = 0.0
        self.window_bytes = 0
        self.epoch: str | None = None
        self.offset = 0
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.opened = False
        self.closed = asyncio.get_running_loop().create_future()
        self.reach: dict[int, float] = {}
        self.latencies: list[tuple[float, float]] = []
        self.c: Counter[str] = Counter()

    # connecting

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while time.time() < self.run.end_at:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if self.slow:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.run.plan.slow_rcvbuf)
            sock.bind((self.run.source, 0))
            sock.setblocking(False)
            self.buf, self.opened = bytearray(), False
            self.closed = loop.create_future()
            try:
                await loop.sock_connect(sock, (HOST, self.run.port))
                await loop.create_connection(lambda: self, sock=sock)
            except OSError:
                sock.close()
                self.c["connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            if self.run.stopped() and self.slow:
                self.transport.pause_reading()  # type: ignore[union-attr]
            code = await self.closed
            self.c[f"close_{code}"] += 1
            await asyncio.sleep(random.uniform(0, 0.5))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        from tests.support.raw_ws import upgrade_request

        self.transport.write(upgrade_request())  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(1006)

    def _send(self, message: dict[str, Any]) -> None:
        from tests.support.raw_ws import OP_TEXT, client_frame

        data = json.dumps(message, separators=(",", ":")).encode()
        self.transport.write(client_frame(OP_TEXT, data))  # type: ignore[union-attr]

    # reading

    def data_received(self, data: bytes) -> None:
        from tests.support.raw_ws import take_server_frames

        if self.laggard and self.run.resumed():
            self._throttle(len(data))
        buf = self.buf
        buf += data
        if not self.opened:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[9:12])
            del buf[: end + 4]
            if status != b"101":  # 429 or 503: refused; try again after the jitter
                self.c[f"handshake_{status.decode()}"] += 1
                self.transport.abort()  # type: ignore[union-attr]
                return
            self.opened = True
            self._send({"op": "connect", "id": 1})
            sub: dict[str, Any] = {"op": "subscribe", "channel": CHANNEL, "id": 2}
            if self.epoch is not None:
                sub["since"] = {"epoch": self.epoch, "offset": self.offset}
            self._send(sub)
        for opcode, payload in take_server_frames(buf):
            self._on_message(opcode, payload)

    def _throttle(self, nbytes: int) -> None:
        """A laggard stops reading for the rest of the second once it read its share."""
        now = time.monotonic()
        if now >= self.window_end:
            self.window_end, self.window_bytes = now + 1.0, 0
        self.window_bytes += nbytes
        transport = self.transport
        if self.window_bytes < self.run.plan.laggard_bytes_per_s or transport is None:
            return
        transport.pause_reading()

        def again() -> None:
            if not transport.is_closing():
                transport.resume_reading()

        asyncio.get_running_loop().call_later(self.window_end - now, again)

    def _on_message(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.closed.done():
                self.closed.set_result(code)
            self.transport.abort()  # type: ignore[union-attr]
            return
        if opcode != 0x1:
            return
        head = payload[:120]
        if head.startswith(b'{"type":"pub"'):
            m = _OFFSET.search(head)
            assert m is not None
            offset = int(m.group(1))
            if offset <= self.offset:
                self.c["duplicates"] += 1
                return
            if offset > self.offset + 1 and self.epoch is not None:
                self.c["gaps"] += 1
            if self.epoch == "-" and offset == 1 and (ep := _EPOCH.search(payload)):
                self.epoch = ep.group(1).decode()  # offset 1 names the channel's first epoch
            self.offset = offset
            now = time.time()
            if self.slow:
                if not self.laggard:
                    self.reach[offset] = now
            else:
                t = _T.search(payload[-60:]) or _T.search(head)
                if t is not None:
                    self.latencies.append((now, now - float(t.group(1))))
            self.c["publications"] += 1
        elif head.startswith(b'{"type":"hb"'):
            self._send({"op": "pong"})
        elif b'"recovery"' in payload:
            rec = _RECOVERY.search(payload)
            result = rec.group(1).decode() if rec else "?"
            self.c[f"recovery_{result}"] += 1
            if result != "recovered":
                ep, off = _EPOCH.search(payload), _OFFSET.search(payload)
                assert ep is not None
                assert off is not None
                self.epoch, self.offset = ep.group(1).decode(), int(off.group(1))
                if self.slow and not self.laggard and self.offset:
                    self.reach[self.offset] = time.time()


@dataclass
class ClientRun:
    plan: Plan
    port: int
    source: str
    start_at: float
    end_at: float

    def stopped(self) -> bool:
        now = time.time()
        stop_at = self.start_at + self.plan.lead_s
        return stop_at <= now < stop_at + self.plan.stop_s

    def resumed(self) -> bool:
        return time.time() >= self.start_at + self.plan.lead_s + self.plan.stop_s


async def _clients(run: ClientRun, fast: int, slow: int, laggards: int) -> dict[str, Any]:
    clients = [Client(run, i, i < slow, i < laggards) for i in range(fast + slow)]
    tasks = [asyncio.ensure_future(c.connect()) for c in clients]
    stop_at = run.start_at + run.plan.lead_s
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    for c in clients:
        if c.slow and c.transport is not None:
            c.transport.pause_reading()
    await asyncio.sleep(max(0.0, stop_at + run.plan.stop_s - time.time()))
    for c in clients:
        if c.slow and c.transport is not None and not c.transport.is_closing():
            c.transport.resume_reading()
    await asyncio.sleep(max(0.0, run.end_at - time.time()))
    for task in tasks:
        task.cancel()
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "counts": [dict(c.c) for c in clients],
        "slow": [c.slow for c in clients],
        "laggard": [c.laggard for c in clients],
        "final": [(c.epoch, c.offset) for c in clients],
        "reach": [c.reach for c in clients if c.slow and not c.laggard],
        "latencies": [lat for c in clients for lat in c.latencies],
    }


def _client_process(run: ClientRun, fast: int, slow: int, laggards: int) -> dict[str, Any]:
    return asyncio.run(_clients(run, fast, slow, laggards))


# --- the run ----------------------------------------------------------------------------


def _free_port() -> int:
    from tests.support.redis_server import free_port

    return free_port(HOST)


def _wait_port(port: int, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the fleet did not listen on {HOST}:{port}")


async def _publish(plan: Plan, url: str, start_at: float, end_at: float) -> list[tuple[float, int]]:
    from publisher.publish import Publisher

    pad = "x" * (plan.item_bytes - 64)
    log: list[tuple[float, int]] = []
    pub = Publisher(url)
    try:
        n = 0
        while True:
            due = start_at + n / plan.rate_per_s
            if due >= end_at:
                break
            await asyncio.sleep(max(0.0, due - time.time()))
            result = await pub.publish(CHANNEL, {"pad": pad, "t": time.time()})
            log.append((time.time(), result.position.offset))
            n += 1
    finally:
        await pub.close()
    return log


def run(
    plan: Plan, code: Path, label: str, *, probe: Path | None = None, trace: bool = False
) -> dict[str, Any]:
    """One run of *plan* against the worker of the code tree *code*.

    *probe*: the worker runs under bench/heap_probe.py, which appends its heap figures to
    that file every second; *trace* also runs tracemalloc there, with snapshots taken when
    the clients are connected (the baseline), when publishing ends, and at the end.
    """
    from tests.support.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="slow-") as tmp:
        redis = RedisServer.launch(Path(tmp) / "redis")
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(code),
            "HERALD_LOG_LEVEL": "WARNING",
            "HERALD_MAX_CONNECTIONS": "19500",
            **dict(plan.server_env),
        }
        command = [sys.executable, "-m", "socketsrv"]
        if probe is not None:
            probe.unlink(missing_ok=True)
            command = [sys.executable, str(Path(__file__).with_name("heap_probe.py")), str(probe)]
            if trace:
                env["HERALD_HEAP_PROBE_TRACE"] = "1"

        def snapshot() -> None:
            """Ask the probe for a snapshot and wait (bounded) until it has taken it."""
            if probe is None or not trace:
                return
            ask = Path(f"{probe}.snap")
            ask.touch()
            give_up = time.monotonic() + 60.0
            while ask.exists() and time.monotonic() < give_up:
                time.sleep(0.1)

        fleet = subprocess.Popen(
            [
                *command,
                "--workers",
                "1",
                "--host",
                HOST,
                "--port",
                str(port),
                "--redis-url",
                redis.url,
            ],
            cwd=code,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        series: list[tuple[float, int]] = []

        def rss_now() -> int:
            kib = measure.sample_tree(fleet.pid).rss_kib
            series.append((time.time(), kib))
            return kib

        try:
            _wait_port(port)
            time.sleep(0.5)
            rss_idle = rss_now()
            t0 = time.time() + 3.0 + plan.clients / 500
            publish_end = t0 + plan.lead_s + plan.stop_s + plan.catch_up_s
            end_at = publish_end + plan.settle_s
            per = [plan.clients // PROCESSES] * PROCESSES
            per[0] += plan.clients - sum(per)
            slow = [plan.slow // PROCESSES] * PROCESSES
            slow[0] += plan.slow - sum(slow)
            laggards = [plan.laggards // PROCESSES] * PROCESSES
            laggards[0] += plan.laggards - sum(laggards)
            with ProcessPoolExecutor(PROCESSES) as pool:
                futures = [
                    pool.submit(
                        _client_process,
                        ClientRun(plan, port, f"127.0.0.{FIRST_SOURCE + i}", t0, end_at),
                        per[i] - slow[i],
                        slow[i],
                        laggards[i],
                    )
                    for i in range(PROCESSES)
                ]
                time.sleep(max(0.0, t0 - time.time() - 0.5))
                rss_connected = rss_now()
                snapshot()
                loop = asyncio.new_event_loop()
                pub_task = loop.create_task(_publish(plan, redis.url, t0, publish_end))
                while not pub_task.done():
                    loop.run_until_complete(asyncio.wait([pub_task], timeout=0.5))
                    rss_now()
                published = pub_task.result()
                loop.close()
                snapshot()
                while time.time() < end_at - 0.5:
                    time.sleep(0.5)
                    rss_now()
                rss_after = rss_now()
                cpu_s = measure.sample_tree(fleet.pid).cpu_s
                snapshot()
                results = [f.result() for f in futures]
        finally:
            fleet.terminate()
            try:
                fleet.wait(15)
            except subprocess.TimeoutExpired:
                fleet.kill()
            redis.close()
    rss = {
        "idle": rss_idle,
        "connected": rss_connected,
        "peak": max(kib for _, kib in series),
        "after_settle": rss_after,
    }
    summary = _summary(plan, label, code, t0, published, results, rss, series)
    # What the worker spent, not how long it waited for a core: less sensitive to a loaded
    # machine than latency or catch-up.
    summary["worker_cpu_s"] = cpu_s
    return summary


def _rss_at(series: list[tuple[float, int]], at: float) -> int | None:
    """The first RSS sample taken at or after *at* (None: the run ended before)."""
    return next((kib for t, kib in series if t >= at), None)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _summary(
    plan: Plan,
    label: str,
    code: Path,
    t0: float,
    published: list[tuple[float, int]],
    results: list[dict[str, Any]],
    rss: dict[str, int],
    series: list[tuple[float, int]],
) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    slow_counts: Counter[str] = Counter()
    finals, lagging = [], []
    for r in results:
        for c, is_slow in zip(r["counts"], r["slow"], strict=True):
            counts.update(c)
            if is_slow:
                slow_counts.update(c)
        finals += r["final"]
        lagging += r.get("laggard", [False] * len(r["final"]))
    last = published[-1][1] if published else 0
    resume_at = t0 + plan.lead_s + plan.stop_s
    top_at_resume = max((o for t, o in published if t <= resume_at), default=0)
    catch_up = []
    not_caught = 0
    for r in results:
        for reach in r["reach"]:
            times = [t for o, t in reach.items() if o >= top_at_resume]
            if times:
                catch_up.append(max(0.0, min(times) - resume_at))
            else:
                not_caught += 1
    lat_all = [lat for r in results for _, lat in r["latencies"]]
    window_end = resume_at + (max(catch_up) if catch_up else plan.catch_up_s)
    lat_window = [lat for r in results for t, lat in r["latencies"] if resume_at <= t <= window_end]
    behind = sum(
        1 for (_, off), lag in zip(finals, lagging, strict=True) if off != last and not lag
    )
    laggards_behind = sum(
        1 for (_, off), lag in zip(finals, lagging, strict=True) if off != last and lag
    )
    stop_at = t0 + plan.lead_s
    caught_at = resume_at + max(catch_up, default=0.0)
    rss_points = {
        **rss,
        "publishing": _rss_at([(t, k) for t, k in series if t < stop_at][-1:], 0.0),
        "catch_up_plus_10s": _rss_at(series, caught_at + 10.0),
        "catch_up_plus_60s": _rss_at(series, caught_at + 60.0),
    }
    return {
        "label": label,
        "code": str(code),
        "code_sha": subprocess.run(
            ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "plan": asdict(plan),
        "published": len(published),
        "last_offset": last,
        "closes": {k[6:]: v for k, v in sorted(counts.items()) if k.startswith("close_")},
        "slow_closes": {k[6:]: v for k, v in sorted(slow_counts.items()) if k.startswith("close_")},
        "recoveries": {k[9:]: v for k, v in sorted(counts.items()) if k.startswith("recovery_")},
        "duplicates": counts["duplicates"],
        "gaps": counts["gaps"],
        "clients_not_at_last_offset": behind,
        "laggards_not_at_last_offset": laggards_behind,
        "catch_up_s": {
            "p50": _pct(catch_up, 0.5),
            "p99": _pct(catch_up, 0.99),
            "max": max(catch_up, default=None),
            "not_caught_up": not_caught,
        },
        "fast_latency_s": {
            "p50": _pct(lat_all, 0.5),
            "p99": _pct(lat_all, 0.99),
            "max": max(lat_all, default=None),
            "samples": len(lat_all),
        },
        "fast_latency_catch_up_window_s": {
            "p50": _pct(lat_window, 0.5),
            "p99": _pct(lat_window, 0.99),
            "samples": len(lat_window),
        },
        "worker_rss_kib": rss_points,
        "worker_rss_series": [(round(t - t0, 2), kib) for t, kib in series],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--code", type=Path, default=Path.cwd(), help="the checkout to run")
    p.add_argument("--label", default="after")
    p.add_argument("--stop-s", type=float, help="override the scale's stop_s")
    p.add_argument("--laggards", type=int, help="override the scale's laggards (Plan)")
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more environment variable for the worker (e.g. a glibc malloc tunable)",
    )
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--probe", type=Path, help="record the worker's heap figures here (bench/heap_probe.py)"
    )
    p.add_argument("--trace", action="store_true", help="with --probe: tracemalloc snapshots")
    args = p.parse_args(argv)
    plan = SCALES[args.scale]
    if args.stop_s is not None:
        plan = replace(plan, stop_s=args.stop_s)
    if args.laggards is not None:
        plan = replace(plan, laggards=args.laggards)
    if args.server_env:
        pairs = [item.partition("=") for item in args.server_env]
        extra = tuple((name, value) for name, _, value in pairs)
        plan = replace(plan, server_env=plan.server_env + extra)
    load_before = os.getloadavg()
    result = {
        "scale": args.scale,
        "machine": measure.machine(),
        **run(plan, args.code.resolve(), args.label, probe=args.probe, trace=args.trace),
        "loadavg": {"start": load_before, "end": os.getloadavg()},
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
