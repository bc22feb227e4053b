"""Python overhead of one delivery, without the kernel: Herald's fan-out against a bare loop.

    .venv/bin/python -m bench.micro_fanout [--connections 10000] [--rounds 20]

Both sides write to a transport whose ``write`` only counts, so what is measured is the
interpreter work around the system call: the floor is ``for t in transports: t.write(frame)``;
Herald is the hub's loop over subscribers calling ``push`` plus the write scheduler's flush.
A real ``transport.write`` costs a few microseconds of kernel time on top of both (measured
on the machines of bench/results/REPORT.md), which is why a few hundred nanoseconds here keep
Herald near the floor in bench.run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from socketsrv.connection import (
    ClientConnection,
    ConnectionConfig,
    ConnectionHost,
    ConnectionState,
    WriteScheduler,
)
from socketsrv.hub import Hub
from socketsrv.metrics import build_metrics
from socketsrv.protocol.session import Limits


class CountingTransport:
    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


async def measure(connections: int, rounds: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    metrics = build_metrics()
    config = ConnectionConfig(
        origins=None,
        max_frame_bytes=65536,
        outbox_max_bytes=1 << 20,
        compression=False,
        close_timeout_s=5.0,
        max_connections=connections,
        limits=Limits(),
    )
    host = ConnectionHost(
        config=config,
        hub=Hub.__new__(Hub),  # never called: the loop below plays the hub's fan-out
        metrics=metrics,
        verifier=None,
        scheduler=WriteScheduler(loop, metrics),
        http=lambda request: None,
        connections=set(),
    )
    conns = []
    transports = []
    for _ in range(connections):
        conn = ClientConnection(host)
        transport = CountingTransport()
        conn.transport = transport  # type: ignore[assignment]
        conn.state = ConnectionState.OPEN  # as after its 101: only then does it take frames
        conns.append(conn)
        transports.append(transport)
    subscribers = dict.fromkeys(conns)
    frame = b"\x81\x50" + b"x" * 80
    best_floor = best_herald = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds):
            for transport in transports:
                transport.write(frame)
        best_floor = min(best_floor, time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(rounds):
            for sub in subscribers:
                sub.push(frame)
            host.scheduler.flush()
        best_herald = min(best_herald, time.perf_counter() - started)
    per = rounds * connections
    return {
        "connections": connections,
        "floor_ns_per_delivery": round(best_floor / per * 1e9, 1),
        "herald_ns_per_delivery": round(best_herald / per * 1e9, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.connections, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
