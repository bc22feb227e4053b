"""``/healthz`` and ``/readyz`` on a small listener of their own (``health_port``).

On the public port a health check waits like any client: in the kernel's accept queue behind
a storm of reconnecting websockets, then behind the loop turns that read and answer them
(issue 12, item 4: up to 8.6 s without an answer when 5,000 clients came back at once, long
enough for a liveness probe to kill a busy, healthy worker). This listener has its own socket
(its own accept queue, which no client reaches) and answers from a thread, so neither the
storm's backlog nor the event loop's work delays it; the thread takes the GIL between the
loop's bytecodes within milliseconds.

    /healthz   200 while the worker's event loop turns: 503 once it has not finished a sweep
               for ``LOOP_STALL_S`` (60 s; 3 sweep intervals if longer): a wedged loop is
               worth a restart, a busy one is not
    /readyz    the same answer as on the public port (the worker serves, its bus is live)

Every other path is 404, every other method than GET and HEAD 405. With several workers each
binds ``health_port`` with SO_REUSEPORT and the kernel hands each check to one of them, as on
the public port. Bind it to loopback or an internal address: load balancers and the
orchestrator's probes are its only clients.

    listener = HealthListener.start("127.0.0.1", 8001, is_ready, last_turn, reuse_port=True)
    listener.port
    listener.close()
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from herald_contract.metrics_listener import ThreadedListener

LOOP_STALL_S = 60.0
"""How long the event loop may go without finishing a sweep before ``/healthz`` says 503."""

Check = Callable[[], bool]
LastTurn = Callable[[], float]
"""``time.monotonic()`` when the worker's loop last finished a sweep."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], reuse_port: bool, handler: Any) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._reuse_port = reuse_port
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if self._reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def _handler(is_ready: Check, last_turn: LastTurn, stall_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(head=False)

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def _answer(self, *, head: bool) -> None:
            path = self.path.partition("?")[0]
            if path == "/healthz":
                stalled_s = time.monotonic() - last_turn()
                status, body = (200, b"ok\n") if stalled_s < stall_s else (503, b"stalled\n")
            elif path == "/readyz":
                status, body = (200, b"ready\n") if is_ready() else (503, b"not ready\n")
            else:
                status, body = 404, b"not found\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Probes are not logged (one line per probe otherwise)."""

    return Handler


class HealthListener(ThreadedListener):
    """A running health listener; :meth:`close` stops it (idempotent)."""

    @classmethod
    def start(
        cls,
        host: str,
        port: int,
        is_ready: Check,
        last_turn: LastTurn,
        *,
        stall_s: float = LOOP_STALL_S,
        reuse_port: bool,
    ) -> HealthListener:
        """Listen on *host*:*port* and answer in a daemon thread (OSError when the address
        cannot be bound); ``/healthz`` is 503 once *last_turn* is *stall_s* old."""
        server = _Server((host, port), reuse_port, _handler(is_ready, last_turn, stall_s))
        return cls(server, f"health-{host}:{port}")
