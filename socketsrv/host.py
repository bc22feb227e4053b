"""What every connection of one worker shares: its configuration, the hub, the counters.

Built once by the worker at start (socketsrv/worker.py) and handed to each
:class:`socketsrv.connection.ClientConnection` it accepts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from socketsrv.endpoints import HttpHandler
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.session import Limits
from socketsrv.writes import WriteScheduler

if TYPE_CHECKING:
    from socketsrv.connection import ClientConnection


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    origins: Sequence[str] | None
    """Allowed Origin header values (a request without one is allowed); None: any."""
    max_frame_bytes: int
    outbox_max_bytes: int
    compression: bool
    close_timeout_s: float
    max_connections: int
    limits: Limits


@dataclass(slots=True)
class ConnectionHost:
    """What every connection of one worker shares."""

    config: ConnectionConfig
    hub: Hub
    metrics: Metrics
    verifier: TokenVerifier | None
    scheduler: WriteScheduler
    http: HttpHandler
    connections: set[ClientConnection]
    """The OPEN and CLOSING connections (those a drain closes and the sweep visits)."""
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    accepting: bool = True
    next_id: int = 0
    transports: int = 0
    """TCP connections not yet lost, closing ones included (a drain waits for them)."""

    def new_client_id(self) -> str:
        self.next_id += 1
        return f"{id(self) & 0xFFFF:04x}-{self.next_id:x}"
