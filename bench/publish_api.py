"""Publications per second through the HTTP publish API against through the Python library,
side by side in one run on one Redis (issue 14, item 3).

    python -m bench.publish_api [--publications 30000] [--concurrency 32] [--rounds 3]
                                [--batch-size 100] [--output J] [--markdown M] [--smoke]

One redis-server (tests/support), one ``python -m publish_api`` process (uvicorn on uvloop
and httptools, as in production), and this process as the client. Three modes, each made
``--rounds`` times in turn (library, http, http-batch, library, ...) so that a change in the
machine's load hits all of them alike:

* ``library``: one :class:`publisher.Publisher`, ``--concurrency`` tasks publishing in a loop;
* ``http``: ``--concurrency`` keep-alive connections, one ``POST /api/publish`` at a time each;
* ``http-batch``: the same connections posting ``POST /api/batch`` of ``--batch-size``.

Every publication goes to one of 100 ``question:<n>`` channels with a 60-byte payload; each
mode's count is checked against the channels' offsets in Redis afterwards. The HTTP client is
a minimal HTTP/1.1 keep-alive client on asyncio streams (httpx costs more CPU per request than
the server, which would measure the client). Reports publications/s, and the CPU seconds of
the API process, of Redis and of this process per mode; the load average is recorded with the
figures (bench/results/PUBLISH_API.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from herald_contract.keys import KeyLayout
from publisher.publish import Publisher

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = 100
MODES = ("library", "http", "http-batch")


@dataclass
class ModeRun:
    mode: str
    publications: int
    seconds: float
    api_cpu_s: float
    redis_cpu_s: float
    client_cpu_s: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.publications / self.seconds if self.seconds else 0.0


def _data(i: int) -> dict[str, Any]:
    return {"type": "score", "post": f"question:{1 + i % CHANNELS}", "score": i, "version": i}


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _redis_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class KeepAlive:
    """One HTTP/1.1 keep-alive connection: POST JSON, read the status and body."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self._host, self._port, self._key = host, port, key
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None
        assert self._writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nX-API-Key: {self._key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        headers = await self._reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = 0
        for line in headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


async def _spread(total: int, workers: int, work: Callable[[int, int], Awaitable[None]]) -> None:
    """*workers* tasks sharing *total* items: task w takes items w, w + workers, ..."""
    await asyncio.gather(*(work(w, len(range(w, total, workers))) for w in range(workers)))


async def run_library(url: str, n: int, concurrency: int, offset: int) -> dict[str, int]:
    async with Publisher(url) as publisher:

        async def work(w: int, count: int) -> None:
            for j in range(count):
                i = offset + w + j * concurrency
                await publisher.publish(f"question:{1 + i % CHANNELS}", _data(i))

        await _spread(n, concurrency, work)
    return {"200": n}


async def run_http(
    port: int, key: str, n: int, concurrency: int, offset: int, batch: int
) -> dict[str, int]:
    statuses: dict[str, int] = {}
    connections = [KeepAlive("127.0.0.1", port, key) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    requests = n if batch == 1 else -(-n // batch)

    async def work(w: int, count: int) -> None:
        connection = connections[w]
        for j in range(count):
            r = w + j * concurrency
            body: dict[str, Any]
            if batch == 1:
                i = offset + r
                path = "/api/publish"
                body = {"channel": f"question:{1 + i % CHANNELS}", "data": _data(i)}
            else:
                path = "/api/batch"
                first = offset + r * batch
                last = min(offset + n, first + batch)
                body = {
                    "publications": [
                        {"channel": f"question:{1 + i % CHANNELS}", "data": _data(i)}
                        for i in range(first, last)
                    ]
                }
            status, _ = await connection.post(path, json.dumps(body).encode())
            statuses[str(status)] = statuses.get(str(status), 0) + (
                1 if batch == 1 else len(body["publications"])
            )

    try:
        await _spread(requests, concurrency, work)
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return statuses


def _published(client: redis.Redis) -> int:
    keys = KeyLayout()
    tops = [client.hget(keys.meta(f"question:{c}"), "top") for c in range(1, CHANNELS + 1)]
    return sum(int(t) for t in tops if t is not None)


def _start_api(redis_url: str, key: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    from tests.support.redis_server import free_port

    port = free_port()
    env = {
        **os.environ,
        "HERALD_REDIS_URL": redis_url,
        "HERALD_API_KEYS": f"bench:{key}",
        "HERALD_API_PORT": str(port),
        "HERALD_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "publish_api"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the publish API exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the publish API did not listen within 30 s") from None
            time.sleep(0.05)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.redis_server import RedisServer

    key = secrets.token_urlsafe(24)
    per_round = args.publications // args.rounds
    runs: list[ModeRun] = []
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="publish-api-bench-") as tmp:
        server = RedisServer.launch(Path(tmp) / "redis")
        api, port = _start_api(server.url, key, Path(tmp) / "api.log")
        client = server.client()
        try:
            offset = 0
            for _ in range(args.rounds):
                for mode in MODES:
                    before = _published(client)
                    api_cpu, redis_cpu = _process_cpu_s(api.pid), _redis_cpu_s(client)
                    own_cpu = time.process_time()
                    started = time.perf_counter()
                    if mode == "library":
                        coroutine = run_library(server.url, per_round, args.concurrency, offset)
                    else:
                        batch = 1 if mode == "http" else args.batch_size
                        coroutine = run_http(port, key, per_round, args.concurrency, offset, batch)
                    statuses = asyncio.run(coroutine)
                    seconds = time.perf_counter() - started
                    made = _published(client) - before
                    if made != per_round or statuses != {"200": per_round}:
                        raise RuntimeError(f"{mode}: {made} made of {per_round}: {statuses}")
                    runs.append(
                        ModeRun(
                            mode,
                            per_round,
                            seconds,
                            _process_cpu_s(api.pid) - api_cpu,
                            _redis_cpu_s(client) - redis_cpu,
                            time.process_time() - own_cpu,
                            statuses,
                        )
                    )
                    offset += per_round
        finally:
            api.terminate()
            api.wait(timeout=30)
            server.close()
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    summary = {}
    for mode in MODES:
        mine = [r for r in runs if r.mode == mode]
        published = sum(r.publications for r in mine)
        # The process that does the publishing work: the API's for HTTP, the client's for
        # the library (this process; the HTTP client's own cost is its column).
        publisher_cpu_s = sum(r.client_cpu_s if mode == "library" else r.api_cpu_s for r in mine)
        summary[mode] = {
            "per_publisher_cpu_s": round(published / publisher_cpu_s) if publisher_cpu_s else None,
            "publications": published,
            "per_s_median_round": round(statistics.median(r.rate for r in mine)),
            "per_s_rounds": [round(r.rate) for r in mine],
            "api_cpu_s_per_1000": round(1000 * sum(r.api_cpu_s for r in mine) / published, 4),
            "redis_cpu_s_per_1000": round(1000 * sum(r.redis_cpu_s for r in mine) / published, 4),
            "client_cpu_s_per_1000": round(1000 * sum(r.client_cpu_s for r in mine) / published, 4),
        }
    return {
        "publications_per_mode_round": per_round,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "modes": summary,
    }


def markdown(report: dict[str, Any], command: str) -> str:
    m = report["modes"]
    lib = m["library"]["per_s_median_round"] or 1
    rows = [
        f"| {mode} | {s['per_s_median_round']:,} | {s['per_s_median_round'] / lib:.2f} |"
        f" {', '.join(f'{r:,}' for r in s['per_s_rounds'])} | {s['per_publisher_cpu_s']:,} |"
        f" {s['api_cpu_s_per_1000']} | {s['redis_cpu_s_per_1000']} |"
        f" {s['client_cpu_s_per_1000']} |"
        for mode, s in m.items()
    ]
    return "\n".join(
        [
            "# The publish API: publications per second, HTTP against the library",
            "",
            f"`{command}`",
            "",
            f"On this {report['cpus']}-core machine, everything on loopback: one redis-server,"
            " one `python -m publish_api` process (uvicorn, uvloop, httptools) and the bench"
            " process as the client (a minimal keep-alive HTTP/1.1 client on asyncio streams,"
            " or one `publisher.Publisher`). Each mode published"
            f" {report['publications_per_mode_round']:,} publications per round,"
            f" {report['rounds']} rounds in turn, with {report['concurrency']} concurrent"
            f" connections or tasks; batches of {report['batch_size']}; 100 `question:<n>`"
            " channels, a ~60-byte payload; each round's count checked against the channels'"
            " offsets in Redis.",
            "",
            f"Load average (1, 5, 15 min) before: {' '.join(report['loadavg_before'])};"
            f" after: {' '.join(report['loadavg_after'])} (other work shared the machine).",
            "",
            "| mode | publications/s (median round) | x library | each round | publications"
            " per CPU-second of the publishing process | API CPU s per 1,000 | Redis CPU s per"
            " 1,000 | client CPU s per 1,000 |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish_api", description=__doc__)
    parser.add_argument("--publications", type=int, default=30_000, help="per mode, all rounds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--output", type=Path, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown report here")
    parser.add_argument("--smoke", action="store_true", help="600 publications, 2 rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.publications, args.rounds, args.concurrency, args.batch_size = 600, 2, 4, 25
    report = measure(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.markdown:
        command = "python -m bench.publish_api " + " ".join(argv or sys.argv[1:])
        args.markdown.write_text(markdown(report, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
