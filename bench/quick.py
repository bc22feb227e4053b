"""A quick, bounded measurement of one worker: memory per idle connection, broadcast rate.

    .venv/bin/python bench/quick.py [--connections 10000] [--publications 100]

Starts its own redis-server and one socketsrv worker (Redis bus), opens the connections from
two load processes on loopback sources 127.0.0.2 and 127.0.0.3 (raw sockets, no websockets
client: the load generator must not be the bottleneck), subscribes them all to one channel,
then publishes through the real publishing path. Prints JSON. The full benchmark with peers
and ratios is issue 3's; this gives the order of magnitude for the closing note.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHANNEL = "tag:bench"
PAGE = 4096


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sockstat_kib() -> int:
    """Kernel memory of TCP sockets (pages in /proc/net/sockstat)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            return int(parts[parts.index("mem") + 1]) * PAGE // 1024
    return 0


def masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + key + body


class Client(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.ready = ready
        self.buffer = b""
        self.received = 0
        self.subscribed = False
        self.sent = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop: not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: herald.v1.json\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.subscribed:
            self.buffer += data
            handshake_done = b"\r\n\r\n" in self.buffer and b"herald.v1.json" in self.buffer
            if handshake_done and not self.sent:
                self.sent = True
                self.transport.write(masked(b'{"op":"connect","id":1}'))
                sub = {"op": "subscribe", "id": 2, "channel": CHANNEL}
                self.transport.write(masked(json.dumps(sub).encode()))
            if b'"id":2' in self.buffer:
                self.subscribed = True
                self.buffer = b""
                if not self.ready.done():
                    self.ready.set_result(None)
            return
        # Count whole frames: parse each server frame header (RFC 6455 5.2, unmasked).
        buf = self.buffer + data if self.buffer else data
        i, n = 0, len(buf)
        while i + 2 <= n:
            length = buf[i + 1] & 0x7F
            head = 2
            if length == 126:
                if i + 4 > n:
                    break
                length, head = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif length == 127:
                if i + 10 > n:
                    break
                length, head = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            if i + head + length > n:
                break
            i += head + length
            self.received += 1
        self.buffer = buf[i:]


async def hold(count: int, source: str, port: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    gate = asyncio.Semaphore(200)

    async def one() -> None:
        async with gate:
            ready: asyncio.Future[None] = loop.create_future()
            _, proto = await loop.create_connection(
                lambda: Client(ready), "127.0.0.1", port, local_addr=(source, 0)
            )
            await asyncio.wait_for(ready, 30)
            clients.append(proto)

    await asyncio.gather(*(one() for _ in range(count)))
    pipe.send(("ready", len(clients)))
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "count":
            pipe.send(sum(c.received for c in clients))
        elif command == "stop":
            for c in clients:
                c.transport.abort()
            return


def load_process(count: int, source: str, port: int, pipe: Connection) -> None:
    import uvloop

    uvloop.run(hold(count, source, port, pipe))


async def publish(redis_url: str, count: int, interval_s: float) -> None:
    from publisher.publish import Publisher

    payload = {"type": "score", "post": 1, "score": 0, "version": 0, "pad": "x" * 40}
    async with Publisher(redis_url) as publisher:
        for i in range(count):
            payload["version"] = i
            payload["score"] = i % 97
            await publisher.publish(CHANNEL, payload)
            if interval_s:
                await asyncio.sleep(interval_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--publications", type=int, default=100)
    parser.add_argument(
        "--interval-ms", type=float, default=0.0,
        help="pause between publications (0: back to back, so frames coalesce per write)",
    )  # fmt: skip
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    redis_port, port = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    env = {**os.environ, "HERALD_PING_INTERVAL_S": "600", "HERALD_MAX_CONNECTIONS": "19000",
           "HERALD_OUTBOX_MAX_BYTES": str(4 << 20), "HERALD_LOG_LEVEL": "WARNING"}  # fmt: skip
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    time.sleep(0.3)
    server = subprocess.Popen(
        [sys.executable, "-m", "socketsrv", "--port", str(port), "--redis-url", redis_url],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    procs = []
    try:
        time.sleep(1.5)
        rss_before, kernel_before = rss_kib(server.pid), sockstat_kib()
        half = args.connections // 2
        pipes = []
        for i, source in enumerate(("127.0.0.2", "127.0.0.3")):
            parent, child = multiprocessing.Pipe()
            n = half if i == 0 else args.connections - half
            p = multiprocessing.Process(target=load_process, args=(n, source, port, child))
            p.start()
            procs.append(p)
            pipes.append(parent)
        opened = sum(pipe.recv()[1] for pipe in pipes)
        time.sleep(1.0)
        rss_after, kernel_after = rss_kib(server.pid), sockstat_kib()

        cpu_before, started = cpu_s(server.pid), time.monotonic()
        asyncio.run(publish(redis_url, args.publications, args.interval_ms / 1000))
        expected = opened * args.publications
        received = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for pipe in pipes:
                pipe.send("count")
            received = sum(pipe.recv() for pipe in pipes)
            if received >= expected:
                break
            time.sleep(0.05)
        elapsed, cpu = time.monotonic() - started, cpu_s(server.pid) - cpu_before
        deliveries = received
        kernel_kib = (kernel_after - kernel_before) / (2 * opened)  # both ends are on loopback
        print(json.dumps({
            "connections": opened,
            "worker_rss_per_idle_connection_kib": round((rss_after - rss_before) / opened, 2),
            "kernel_tcp_buffer_kib_per_connection": round(kernel_kib, 2),
            "publications": args.publications,
            "interval_ms": args.interval_ms,
            "deliveries_expected": expected,
            "deliveries_received": deliveries,
            "deliveries_per_s": round(deliveries / elapsed),
            "deliveries_per_server_cpu_s": round(deliveries / max(cpu, 1e-9)),
            "seconds": round(elapsed, 2),
        }, indent=2))  # fmt: skip
        for pipe in pipes:
            pipe.send("stop")
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        server.terminate()
        server.wait(30)
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
