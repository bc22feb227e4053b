"""The peer a Python user would pick: python-socketio with its Redis manager, on uvicorn.

    python -m bench.peers.socketio_server --port P --redis-url URL [--workers N]
        [--ws websockets-sansio|websockets|wsproto] [--http auto|httptools|h11]

``socketio.AsyncServer(async_mode="asgi", client_manager=AsyncRedisManager(url),
cors_allowed_origins="*", transports=["websocket"])`` in ``socketio.ASGIApp``, served by
``uvicorn.Server`` on uvloop with access logs off and log level warning: the configuration
the python-socketio documentation gives for several processes behind Redis. Engine.IO's own
heartbeat (ping every 25 s, the default) keeps connections alive, so uvicorn's websocket-level
ping is turned off (it would be a second heartbeat per connection); permessage-deflate is
off, as Herald's default is.

Clients emit ``subscribe`` with a channel name; the handler enters the room of that name and
acks ``"ok"``. Publications come from another process through
``AsyncRedisManager(url, write_only=True).emit("pub", data, room=channel)`` (bench/targets.py).
``GET /healthz`` answers 200 with the HTTP and websocket implementations in use.

The Redis manager normally subscribes on the first client connection; here it is started
before "ready" is printed, and "ready" waits until Redis counts the subscription (``PUBSUB
NUMSUB``), so nothing published after "ready" is lost.

``--workers N`` (N > 1) runs N processes with SO_REUSEPORT on one port under a supervisor
(the same one as the floor server's: bench/peers/supervisor.py); uvicorn has no
reuse-port option, so each worker binds its own socket and hands it to ``Server.serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bench.peers.supervisor import parser, run_workers

WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets", "wsproto")
DEFAULT_WS = "websockets-sansio"
READY_TIMEOUT_S = 30.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def build_app(redis_url: str, info: dict[str, str]) -> tuple[Any, Any]:
    """The ``socketio.AsyncServer`` and the ASGI app around it."""
    import socketio  # type: ignore[import-untyped]  # python-socketio ships no types

    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(redis_url),
        cors_allowed_origins="*",
        transports=["websocket"],
    )

    @sio.on("subscribe")  # type: ignore[untyped-decorator]
    async def subscribe(sid: str, channel: str) -> str:
        await sio.enter_room(sid, channel)
        return "ok"

    body = json.dumps({"ok": True, "pid": os.getpid(), **info}).encode()

    async def other(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        found = scope["path"] == "/healthz"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if found else 404,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body if found else b"{}"})

    return sio, socketio.ASGIApp(sio, other_asgi_app=other)


def resolve_http(http: str) -> str:
    """The HTTP implementation uvicorn uses for *http* ("auto": httptools when installed)."""
    if http != "auto":
        return http
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def _redis_subscribed(sio: Any, redis_url: str, expected: int) -> None:
    """Start the Redis manager's listener now and wait until Redis counts it subscribed."""
    from redis.asyncio import Redis

    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()
    client = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            counts = await client.pubsub_numsub(sio.manager.channel)
            if counts and counts[0][1] >= expected:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis manager did not subscribe")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def serve(host: str, port: int, redis_url: str, ws: str, http: str, reuse_port: bool) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises a caught SIGTERM after its graceful shutdown (exit status
            # -15); the handlers below stop it the same way and let the process exit 0.
            yield

    sio, app = build_app(redis_url, {"ws": ws, "http": resolve_http(http)})
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=http,
        ws=ws,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=3,
    )
    server = Server(config)
    sock = listen_socket(host, port, reuse_port)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.01)
    expected = int(os.environ.get("BENCH_WORKERS", "1"))
    await _redis_subscribed(sio, redis_url, expected)
    print("ready", flush=True)
    await task
    sock.close()


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m bench.peers.socketio_server", __doc__)
    p.add_argument("--ws", choices=WS_IMPLEMENTATIONS, default=DEFAULT_WS)
    p.add_argument("--http", choices=("auto", "httptools", "h11"), default="auto")
    args = p.parse_args(argv)
    if args.workers > 1:
        child = [
            "--host", args.host, "--port", str(args.port), "--redis-url", args.redis_url,
            "--ws", args.ws, "--http", args.http,
        ]  # fmt: skip
        return run_workers("bench.peers.socketio_server", child, args.workers)
    import uvloop

    uvloop.run(serve(args.host, args.port, args.redis_url, args.ws, args.http, args.reuse_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
