"""The conflation experiment (issue 12, item 2): a hot question voted on, 10% of the clients on
a throttled reader.

    .venv/bin/python -m bench.conflation [--scale smoke|quick|issue] [--out FILE] [--before DIR]

One redis-server, one fleet worker (``python -m socketsrv --workers 1`` from this checkout) and
N raw websocket clients (protocol v1, JSON) in two load processes bound to 127.0.0.20, .21,
all subscribed to ``question:1``. A publisher (``publisher.Publisher``, the real publish path)
publishes the Q&A core's score event (qasite/domain/events.py) of one post at ``votes_per_s``
for ``vote_s``. ``throttled`` of the clients read at most ``read_bytes_per_s`` (2 KiB/s) with a
receive buffer of ``throttled_rcvbuf`` bytes (a slow link's window); the others read freely.

Each scenario is run on a fresh worker: ``calm`` (nobody throttled: the reference p99),
``off`` (conflation off: ``conflate_mark_bytes=0``), ``on`` (the defaults: 16 KiB mark,
16 KiB ``send_lowat_bytes``) and ``on-small`` (1 KiB each: marks sized for a 2 KiB/s link).
With ``--before DIR`` (a checkout of an older commit, e.g. ``git archive <commit> | tar -x -C
DIR``), ``on-before`` runs the defaults with that checkout's worker, in the same run.
Reported per scenario: closes by code (throttled and not), unannounced gaps, how many
throttled clients hold the final score at the end and how long after the last vote they got
it, the fast clients' publish-to-receive latency (p50/p99/max), the worker's conflated
counter. Each run is bounded in time (the schedule) and in connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import urllib.request
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import measure
from bench.slow_clients import _pct

CHANNEL = "question:1"
POST = "question:1"
HOST = "127.0.0.2"
FIRST_SOURCE = 20
PROCESSES = 2
TICK_S = 0.1
_OFFSET = re.compile(rb'"offset":(\d+)')
_CONFLATED = re.compile(rb'"conflated":(\d+)')
_SCORE = re.compile(rb'"score":(\d+)')
_T = re.compile(rb'"t":([0-9.]+)')


@dataclass(frozen=True)
class Plan:
    clients: int = 100
    throttled: int = 10
    votes_per_s: float = 200.0
    vote_s: float = 30.0
    lead_s: float = 2.0
    settle_s: float = 10.0
    """The clients keep reading this long after the last vote."""
    read_bytes_per_s: int = 2048
    throttled_rcvbuf: int = 2048


SCALES = {
    "smoke": Plan(clients=20, throttled=2, vote_s=4.0, lead_s=1.0, settle_s=3.0),
    "quick": Plan(),
    "issue": Plan(clients=1000, throttled=100, vote_s=60.0),
    "long": Plan(vote_s=60.0, settle_s=30.0),
}

SCENARIOS: dict[str, dict[str, str]] = {
    "calm": {"HERALD_CONFLATE_MARK_BYTES": "0"},
    "off": {"HERALD_CONFLATE_MARK_BYTES": "0"},
    "on": {},
    "on-small": {"HERALD_CONFLATE_MARK_BYTES": "1024", "HERALD_SEND_LOWAT_BYTES": "1024"},
    "on-before": {},
}


class Client(asyncio.Protocol):
    """A raw websocket client that records scores, gaps and latencies."""

    def __init__(self, plan: Plan, throttled: bool) -> None:
        self.plan, self.throttled = plan, throttled
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.opened = False
        self.offset = 0
        self.score = 0
        self.score_at = 0.0
        self.latencies: list[float] = []
        self.window = (0.0, 0)
        self.c: Counter[str] = Counter()
        self.closed = asyncio.get_running_loop().create_future()
        self.ending = False
        """The run is over: the load process drops the socket (not a close to count)."""

    async def connect(self, source: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.throttled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.plan.throttled_rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (HOST, port))
        await loop.create_connection(lambda: self, sock=sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from tests.support.raw_ws import upgrade_request

        self.transport = transport  # type: ignore[assignment]
        self.transport.write(upgrade_request())  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done() and not self.ending:
            self.closed.set_result(1006)
            self.c["close_1006"] += 1

    def _send(self, message: dict[str, Any]) -> None:
        from tests.support.raw_ws import OP_TEXT, client_frame

        data = json.dumps(message, separators=(",", ":")).encode()
        self.transport.write(client_frame(OP_TEXT, data))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        from tests.support.raw_ws import take_server_frames

        if self.throttled:
            self._throttle(len(data))
        buf = self.buf
        buf += data
        if not self.opened:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[: end + 4]
            self.opened = True
            self._send({"op": "connect", "id": 1})
            self._send({"op": "subscribe", "channel": CHANNEL, "id": 2})
        for opcode, payload in take_server_frames(buf):
            self._on_message(opcode, payload)

    def _throttle(self, nbytes: int) -> None:
        """Read at most read_bytes_per_s: past a tenth of it in a tenth of a second, stop
        until the next tenth."""
        now = time.monotonic()
        start, used = self.window
        if now - start >= TICK_S:
            start, used = now, 0
        used += nbytes
        self.window = (start, used)
        if used >= self.plan.read_bytes_per_s * TICK_S and self.transport is not None:
            self.transport.pause_reading()
            delay = start + TICK_S * used / (self.plan.read_bytes_per_s * TICK_S) - now
            asyncio.get_running_loop().call_later(max(0.0, delay), self._resume)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.window = (time.monotonic(), 0)
            self.transport.resume_reading()

    def _on_message(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if not self.closed.done():
                self.closed.set_result(code)
                self.c[f"close_{code}"] += 1
            return
        if opcode != 0x1:
            return
        if payload.startswith(b'{"type":"pub"'):
            # Only the pub frames are many: read their few fields without a JSON parse (the
            # load processes share two cores with the worker).
            offset = int(_OFFSET.search(payload).group(1))  # type: ignore[union-attr]
            conflated = _CONFLATED.search(payload)
            score = int(_SCORE.search(payload).group(1))  # type: ignore[union-attr]
            sent = float(_T.search(payload).group(1))  # type: ignore[union-attr]
            m: dict[str, Any] = {"offset": offset, "data": {"score": score, "t": sent}}
            if conflated is not None:
                m["conflated"] = int(conflated.group(1))
            kind = "pub"
        else:
            m = json.loads(payload)
            kind = str(m.get("type"))
        if kind == "hb":
            self._send({"op": "pong"})
        elif kind == "reply" and "offset" in m.get("result", {}):
            self.offset = m["result"]["offset"]
        elif kind == "pub":
            offset = m["offset"]
            if offset <= self.offset:
                self.c["duplicates"] += 1
                return
            if offset > self.offset + 1:
                if m.get("conflated", offset) <= self.offset + 1:
                    self.c["conflated_skips"] += 1
                else:
                    self.c["gaps"] += 1
            self.offset = offset
            data = m["data"]
            now = time.time()
            if data["score"] <= self.score:
                self.c["older_after_newer"] += 1
            self.score, self.score_at = data["score"], now
            self.c["publications"] += 1
            if not self.throttled:
                self.latencies.append(now - data["t"])


def _unread(c: Client) -> int:
    """The bytes the client's own kernel holds that it has not read (FIONREAD)."""
    sock = None if c.transport is None else c.transport.get_extra_info("socket")
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return 0  # closed
    with contextlib.suppress(OSError):
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])
    return 0


async def _clients(
    plan: Plan, port: int, source: str, fast: int, throttled: int, end_at: float, last_at: float
) -> dict[str, Any]:
    clients = [Client(plan, i < throttled) for i in range(fast + throttled)]
    for c in clients:
        await c.connect(source, port)
    # What the throttled clients' own kernels hold unread when the last vote is due: the part
    # of the final score's wait that no server can shorten.
    await asyncio.sleep(max(0.0, last_at - time.time()))
    unread = [_unread(c) for c in clients if c.throttled]
    await asyncio.sleep(max(0.0, end_at - time.time()))
    for c in clients:
        c.ending = True
        if c.transport is not None:
            c.transport.abort()
    return {
        "throttled": [c.throttled for c in clients],
        "counts": [dict(c.c) for c in clients],
        "final": [(c.score, c.score_at, c.closed.done()) for c in clients],
        "latencies": [lat for c in clients for lat in c.latencies],
        "unread_at_last_vote": unread,
    }


def _client_process(
    plan: Plan, port: int, source: str, fast: int, throttled: int, end_at: float, last_at: float
) -> dict[str, Any]:
    return asyncio.run(_clients(plan, port, source, fast, throttled, end_at, last_at))


async def _vote(plan: Plan, url: str, start_at: float) -> tuple[int, float]:
    """The votes; the last score and when it was published."""
    from publisher.publish import Publisher

    pub = Publisher(url)
    score, last_at = 0, 0.0
    try:
        count = int(plan.votes_per_s * plan.vote_s)
        for n in range(count):
            await asyncio.sleep(max(0.0, start_at + n / plan.votes_per_s - time.time()))
            score += 1
            data = {
                "type": "score",
                "question": 1,
                "post": POST,
                "score": score,
                "version": score,
                "t": time.time(),
            }
            await pub.publish(CHANNEL, data)
            last_at = time.time()
    finally:
        await pub.close()
    return score, last_at


def _worker_counts(port: int) -> dict[str, float]:
    """The worker's conflated counter and its closes by code."""
    counts: dict[str, float] = {}
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=60) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("herald_conflated_publications_total "):
                counts["conflated"] = float(line.split()[1])
            elif m := re.match(r'herald_disconnects_total\{code="(\d+)"\} (\S+)', line):
                counts[f"close_{m.group(1)}"] = float(m.group(2))
    return counts


def run(plan: Plan, scenario: str, before: Path | None = None) -> dict[str, Any]:
    """One scenario on a fresh worker and Redis; ``on-before`` runs the worker of the
    checkout *before* (its directory comes first on the worker's import path)."""
    from bench.slow_clients import _free_port, _wait_port
    from tests.support.redis_server import RedisServer

    throttled_n = 0 if scenario == "calm" else plan.throttled
    with tempfile.TemporaryDirectory(prefix="conflation-") as tmp:
        redis = RedisServer.launch(Path(tmp) / "redis")
        port = _free_port()
        env = {**os.environ, "HERALD_LOG_LEVEL": "WARNING", **SCENARIOS[scenario]}
        fleet = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "socketsrv",
                "--workers",
                "1",
                "--host",
                HOST,
                "--port",
                str(port),
                "--redis-url",
                redis.url,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            cwd=before if scenario == "on-before" else None,
        )
        try:
            _wait_port(port)
            t0 = time.time() + 2.0 + plan.clients / 500 + plan.lead_s
            end_at = t0 + plan.vote_s + plan.settle_s
            per = [plan.clients // PROCESSES] * PROCESSES
            per[0] += plan.clients - sum(per)
            thr = [throttled_n // PROCESSES] * PROCESSES
            thr[0] += throttled_n - sum(thr)
            with ProcessPoolExecutor(PROCESSES) as pool:
                futures = [
                    pool.submit(
                        _client_process,
                        plan,
                        port,
                        f"127.0.0.{FIRST_SOURCE + i}",
                        per[i] - thr[i],
                        thr[i],
                        end_at,
                        t0 + plan.vote_s,
                    )
                    for i in range(PROCESSES)
                ]
                final_score, last_vote_at = asyncio.run(_vote(plan, redis.url, t0))
                time.sleep(max(0.0, end_at - time.time() - 0.5))
                worker = _worker_counts(port)
                results = [f.result() for f in futures]
        finally:
            fleet.terminate()
            try:
                fleet.wait(15)
            except subprocess.TimeoutExpired:
                fleet.kill()
            redis.close()
    return _summary(plan, scenario, final_score, last_vote_at, worker, results)


def _summary(
    plan: Plan,
    scenario: str,
    final_score: int,
    last_vote_at: float,
    worker: dict[str, float],
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    counts = {True: Counter[str](), False: Counter[str]()}
    lags: list[float] = []
    stale = 0
    for r in results:
        for is_thr, c, (score, at, _) in zip(r["throttled"], r["counts"], r["final"], strict=True):
            counts[is_thr].update(c)
            if is_thr:
                if score == final_score:
                    lags.append(max(0.0, at - last_vote_at))
                else:
                    stale += 1
    lat = [x for r in results for x in r["latencies"]]
    unread = [float(x) for r in results for x in r["unread_at_last_vote"]]
    closes = {
        k: {n[6:]: v for n, v in sorted(c.items()) if n.startswith("close_")}
        for k, c in (("throttled", counts[True]), ("others", counts[False]))
    }
    return {
        "scenario": scenario,
        "env": SCENARIOS[scenario],
        "plan": asdict(plan),
        "votes": final_score,
        "closes": closes,
        "gaps": counts[True]["gaps"] + counts[False]["gaps"],
        "older_after_newer": counts[True]["older_after_newer"] + counts[False]["older_after_newer"],
        "conflated_skips_seen": counts[True]["conflated_skips"],
        "worker_conflated": worker.get("conflated", 0.0),
        "worker_closes": {k[6:]: v for k, v in sorted(worker.items()) if k.startswith("close_")},
        "throttled_with_final_score": len(lags),
        "throttled_without_final_score": stale,
        "final_score_lag_s": {"p50": _pct(lags, 0.5), "max": max(lags, default=None)},
        "throttled_unread_at_last_vote_bytes": {
            "p50": _pct(unread, 0.5),
            "max": max(unread, default=None),
        },
        "others_latency_s": {
            "p50": _pct(lat, 0.5),
            "p99": _pct(lat, 0.99),
            "max": max(lat, default=None),
            "samples": len(lat),
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    p.add_argument("--out", type=Path)
    p.add_argument("--before", type=Path, help="an older checkout: adds the on-before scenario")
    args = p.parse_args(argv)
    plan = SCALES[args.scale]
    default = ["calm", "off", "on", "on-small"] + (["on-before"] if args.before else [])
    scenarios = args.scenario or default
    if "on-before" in scenarios and args.before is None:
        p.error("on-before needs --before DIR")
    runs: list[dict[str, Any]] = []
    for scenario in scenarios:
        runs.append(run(plan, scenario, args.before))
        runs[-1]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
        result = {"scale": args.scale, "machine": measure.machine(), "runs": runs}
        text = json.dumps(result, indent=2)
        if args.out:
            args.out.write_text(text + "\n")  # after each scenario: a later failure keeps it
    print(text)
    return 0


if __name__ == "__main__":
    random.seed(1)
    sys.exit(main())
