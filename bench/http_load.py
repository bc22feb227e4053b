"""The load of the Q&A HTTP benchmark (bench/qa_http.py): its request mix and a raw asyncio
HTTP/1.1 keep-alive client.

    run = await load(host, port, "search", request_bytes(paths), connections=32,
                     duration_s=20, max_requests=1_000_000)
    run.summary()

Closed loop: each connection sends its next request once the previous response is read in
full (Content-Length); it stops at the deadline or when the shared request budget is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypedDict

SEARCH_WORDS = (
    ("parse", "date"), ("socket", "timeout"), ("upload", "image"), ("merge", "branch"),
    ("thread", "lock"), ("read", "file"), ("sort", "list"), ("cache", "session"),
    ("convert", "string"), ("query", "index"), ("deploy", "container"), ("stream", "buffer"),
    ("encode", "token"), ("validate", "form"), ("render", "component"), ("join", "table"),
)  # fmt: skip
TAGS = ("python", "javascript", "java", "c#", "php", "android", "html", "jquery", "css", "sql",
        "postgresql", "redis", "docker", "rust", "asyncio", "fastapi")  # fmt: skip


class LatencyMs(TypedDict):
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


class RunSummary(TypedDict):
    scenario: str
    connections: int
    requests: int
    ok: int
    statuses: dict[str, int]
    errors: dict[str, int]
    elapsed_s: float
    requests_per_s: float
    latency_ms: LatencyMs
    mean_response_bytes: int


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

    def summary(self) -> RunSummary:
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
    """One GET request per path, ready to write."""
    return [f"GET {p} HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n\r\n".encode() for p in paths]


def scenario_paths(scenario: str, max_id: int, rng: random.Random, count: int) -> list[str]:
    """*count* request paths of *scenario* (question, search or tag_newest), drawn by *rng*."""
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
