"""``/metrics`` alone on a listener of its own (``metrics_port``), apart from the public port.

Both programs use it when their ``metrics_port`` is set: the socket fleet (one worker in
its process, or the supervisor summing the workers' multiprocess files) and the Q&A core
(every uvicorn worker of an instance binds the port with SO_REUSEPORT and answers with the
sum over the instance, as the public port did). Bind it to loopback or an internal address
only: the scrape is the only thing it serves.

    listener = MetricsListener.start("127.0.0.1", 9100, render)   # render() -> bytes
    listener.port   # the bound port (0 resolves)
    listener.close()

A thread answers the scrapes (wsgiref, stdlib only): ``GET /metrics`` is 200 with the
Prometheus text exposition, every other path 404, every other method 405.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Render = Callable[[], bytes]


class MetricsPortUnavailable(OSError):
    """The metrics address cannot be bound (errno and strerror as the bind's)."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ReusePortServer(_Server):
    allow_reuse_port = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _ReusePortServer6(_ReusePortServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one line per scrape otherwise)."""


def _app(render: Render) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            body, status, ctype = b"not found\n", "404 Not Found", "text/plain; charset=utf-8"
        elif environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            body, status, ctype = b"GET only\n", "405 Method Not Allowed", "text/plain"
        else:
            body, status, ctype = render(), "200 OK", CONTENT_TYPE
        start_response(
            status,
            [
                ("Content-Type", ctype),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]

    return app


class ThreadedListener:
    """A small HTTP listener answered by a daemon thread: :meth:`close` stops it
    (idempotent). The metrics listener and the fleet's health listener are two."""

    def __init__(self, server: socketserver.TCPServer, name: str) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True, name=name
        )
        self._closed = False
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


class MetricsListener(ThreadedListener):
    """A running metrics listener; :meth:`close` stops it (idempotent)."""

    @classmethod
    def start(
        cls, host: str, port: int, render: Render, *, reuse_port: bool = False
    ) -> MetricsListener:
        """Listen on *host*:*port* and answer in a daemon thread. Raises
        :class:`MetricsPortUnavailable` (an OSError) when the address cannot be bound."""
        v6 = ":" in host
        server_class: type[_Server]
        if reuse_port:
            server_class = _ReusePortServer6 if v6 else _ReusePortServer
        else:
            server_class = _Server6 if v6 else _Server
        try:
            server = make_server(
                host, port, _app(render), server_class=server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise MetricsPortUnavailable(exc.errno, exc.strerror) from exc
        return cls(server, f"metrics-{host}:{port}")
