"""How the Q&A core's HTTP server holds its connections: a deadline on request headers and a
bound on open connections, on top of uvicorn's own protocols (issue 11, item 9).

    uvicorn.Config(app, host=..., port=..., **server_options(settings))

uvicorn arms no timer while a request's headers arrive: its keep-alive timeout starts only
after an answer and is cancelled by the next byte, so a client sending a header line every
few seconds (slowloris) holds a connection, a descriptor and a concurrency slot for ever; 500
of them stayed open for 30 s in the review. Its ``limit_concurrency`` only acts once a request
head is complete, so it never refuses those either. The protocols here add both, per
connection, from an :class:`HttpGuard` that :func:`qasite.main.create_app` hands to the server
through the lifespan state (``GUARD_STATE_KEY``, the one channel from an ASGI app to its
server's protocols):

- **Header deadline** (``http_header_timeout_s``): from a connection's opening, and from each
  answer on a keep-alive connection, the next request's line and headers must have arrived
  within the deadline, however slowly they trickle. Past it the connection is closed: with a
  ``408`` in the API's error format when part of a request came, silently when nothing did
  (an idle keep-alive connection is closed earlier by uvicorn's ``http_keep_alive_s``).
- **Connection bound** (``http_max_connections``, at most half the process's open-file limit
  so the rest, the socket worker's in embedded mode included, keeps descriptors): the
  connection past it is answered ``503`` with ``Retry-After: 1`` at once and closed.

Both count in ``herald_qa_http_refused{reason="header_timeout"|"too_many_connections"}``.
Without a guard in the lifespan state (lifespan off) the protocols behave as uvicorn's.
"""

from __future__ import annotations

import asyncio
import json
import resource
from dataclasses import dataclass
from typing import Any, Literal

import h11
from prometheus_client import Counter
from uvicorn.protocols.http.h11_impl import H11Protocol

from qasite.api.errors import error_body
from qasite.core.settings import Settings

GUARD_STATE_KEY = "herald_qa_http_guard"
"""The lifespan state entry holding the :class:`HttpGuard` (read by the protocols below)."""

Parser = Literal["auto", "h11", "httptools"]


@dataclass(frozen=True, slots=True)
class HttpGuard:
    """The limits one server process applies to its connections, and where refusals count."""

    header_timeout_s: float
    max_connections: int
    refused: Counter

    @classmethod
    def of(cls, settings: Settings, refused: Counter) -> HttpGuard:
        soft_limit, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = settings.http_max_connections
        if soft_limit != resource.RLIM_INFINITY:
            cap = max(1, min(cap, soft_limit // 2))
        return cls(settings.http_header_timeout_s, cap, refused)


def _raw_error(status: int, phrase: str, reason: str, message: str, *extra: str) -> bytes:
    """A complete ``Connection: close`` answer in the API's error format, written to the
    transport directly (no request cycle exists when it is sent)."""
    body = json.dumps(error_body(status, reason, message)).encode()
    head = [
        f"HTTP/1.1 {status} {phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


TOO_MANY_CONNECTIONS = _raw_error(
    503, "Service Unavailable", "busy", "too many connections; retry shortly", "retry-after: 1"
)
HEADER_TIMEOUT = _raw_error(
    408, "Request Timeout", "header_timeout", "the request's headers took too long"
)


class _Guarded(asyncio.Protocol):
    """The header deadline and the connection bound; mixed into uvicorn's protocols, whose
    attributes (``transport``, ``connections``, ``cycle``, ``loop``, ``app_state``) it uses.
    Its transport hooks run before the protocol's own (``super()`` is the uvicorn class)."""

    transport: asyncio.Transport
    connections: set[Any]
    cycle: Any
    loop: asyncio.AbstractEventLoop
    app_state: dict[str, Any]

    _guard: HttpGuard | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _awaiting_head = False
    _head_begun = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._guard_connection()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and data:
            self._head_begun = True
        super().data_received(data)

    def _guard_connection(self) -> bool:
        """At ``connection_made``: refuse the connection past the bound (True: refused), else
        start waiting for the first request's head."""
        guard = self.app_state.get(GUARD_STATE_KEY)
        self._guard = guard if isinstance(guard, HttpGuard) else None
        if self._guard is None:
            return False
        if len(self.connections) > self._guard.max_connections:
            self._guard.refused.labels("too_many_connections").inc()
            self.transport.write(TOO_MANY_CONNECTIONS)
            self.transport.close()
            return True
        self._await_head()
        return False

    def _await_head(self) -> None:
        """Arm the deadline for the next request's head (no-op without a guard)."""
        self._cancel_head_timer()
        if self._guard is None or self.transport.is_closing():
            return
        self._awaiting_head, self._head_begun = True, False
        self._head_timer = self.loop.call_later(self._guard.header_timeout_s, self._head_overdue)

    def _head_received(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        in_flight = self.cycle is not None and not self.cycle.response_complete
        if self._guard is None or self.transport.is_closing() or in_flight:
            return
        self._guard.refused.labels("header_timeout").inc()
        if self._head_begun:
            self.transport.write(HEADER_TIMEOUT)
        self.transport.close()


class GuardedH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol (what the image installs) with the header deadline and the
    connection bound."""

    def handle_events(self) -> None:
        super().handle_events()
        # h11 leaves IDLE once a request line and its headers are parsed (upgrades included).
        if self._awaiting_head and self.conn.their_state is not h11.IDLE:
            self._head_received()

    def on_response_complete(self) -> None:
        self._await_head()
        super().on_response_complete()  # may parse a pipelined head: handle_events cancels
        if self.transport.is_closing():
            self._cancel_head_timer()


def _httptools_protocol() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline and the connection bound."""

        def on_headers_complete(self) -> None:
            self._head_received()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self._await_head()
            super().on_response_complete()
            if self.transport.is_closing():
                self._cancel_head_timer()

    GuardedHttpToolsProtocol.__module__ = __name__
    GuardedHttpToolsProtocol.__qualname__ = "GuardedHttpToolsProtocol"
    return GuardedHttpToolsProtocol


GuardedHttpToolsProtocol = _httptools_protocol()
"""None where httptools is not installed (the image: uvicorn without its extras)."""


def protocol_class(parser: Parser = "auto") -> type[asyncio.Protocol]:
    """The guarded protocol for *parser*; "auto" is uvicorn's choice (httptools if installed)."""
    if parser == "h11" or (parser == "auto" and GuardedHttpToolsProtocol is None):
        return GuardedH11Protocol
    if GuardedHttpToolsProtocol is None:
        raise RuntimeError("httptools is not installed")
    return GuardedHttpToolsProtocol


def server_options(settings: Settings, parser: Parser = "auto") -> dict[str, Any]:
    """uvicorn's options for the Q&A core (``uvicorn.Config`` / ``uvicorn.run`` keywords)."""
    return {
        "http": protocol_class(parser),
        "timeout_keep_alive": settings.http_keep_alive_s,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }
