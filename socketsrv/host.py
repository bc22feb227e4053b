"""What every connection of one worker shares: its configuration, the hub, the counters.

Built once by the worker at start (socketsrv/worker.py) and handed to each
:class:`socketsrv.connection.ClientConnection` it accepts.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from herald_contract.namespaces import Namespaces
from socketsrv.admission import Admission
from socketsrv.endpoints import HttpHandler
from socketsrv.expiry import ExpiryQueue
from socketsrv.hub import Hub
from socketsrv.metrics import Metrics
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.budget import AddressBudget, AddressBudgets, AddressLimits
from socketsrv.protocol.session import Limits
from socketsrv.writes import WriteScheduler

if TYPE_CHECKING:
    from socketsrv.connection import ClientConnection

log = logging.getLogger(__name__)


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
    max_connections_per_address: int = 1 << 30
    """Per worker; an address past it gets 429 at the upgrade."""
    max_subscriptions_per_address: int = 1 << 30
    proxy_protocol: bool = False
    """Each connection starts with a PROXY header (socketsrv/proxy_protocol.py)."""
    trusted_proxies: frozenset[str] = frozenset()
    """Peers whose X-Forwarded-For header names the client."""
    address_limit_exempt: tuple[str, ...] = ()
    """Addresses or networks (CIDR) the per-address limits do not count."""
    fd_reserve: int | None = None
    """Descriptors kept free for the worker's own use (None: no check)."""
    address_limits: AddressLimits = field(default_factory=AddressLimits)
    """What one address may spend, its connections together (rates; the counts are above)."""
    reconnect_spread_s: float = 5.0
    """The window of the ``retry_ms`` hint of the closes that carry one (4000, 4003, 4007)."""
    conflate_mark_bytes: int = 0
    """Unsent bytes past which keyed publications conflate (socketsrv/outbox.py); 0: never."""
    send_lowat_bytes: int = 0
    """``TCP_NOTSENT_LOWAT`` set on each connection's socket; 0: the kernel's default."""
    namespaces: Namespaces | None = None
    """The channel kinds clients may subscribe to (None: the shipped file's)."""
    max_handshakes: int = 0
    """Opening handshakes in flight at once (socketsrv/admission.py); 0: no limit."""
    handshake_queue: int = 10_000
    """Upgrade requests that may wait for a turn; past it 503."""


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
    address_connections: dict[str, int] = field(default_factory=dict)
    """Open websockets per client address (per worker)."""
    address_subscriptions: dict[str, int] = field(default_factory=dict)
    """Subscriptions (pending ones included) per client address (per worker)."""
    budgets: AddressBudgets | None = None
    """The per-address buckets (built from ``config.address_limits`` when None)."""
    exempt: dict[str, bool] = field(default_factory=dict)
    """Whether an address is in ``address_limit_exempt`` (a cache, cleared when big)."""
    expiries: ExpiryQueue[ClientConnection] = field(default_factory=ExpiryQueue)
    """The connections with a token, by expiry: the sweep closes them on time (4004)."""
    accept_ceiling: int | None = None
    """Transports past which a new one is closed at once: RLIMIT_NOFILE minus the reserve
    minus the descriptors the process held before listening (set by :meth:`measure_fds`)."""
    admission: Admission | None = None
    """Handshakes in flight and those waiting (built from the config when None)."""

    def __post_init__(self) -> None:
        if self.budgets is None:
            self.budgets = AddressBudgets(self.config.address_limits)
        if self.admission is None:
            self.admission = Admission(
                self.config.max_handshakes,
                self.config.handshake_queue,
                _call_soon,
                queued=self.metrics.handshakes_queued,
                abandoned=self.metrics.handshakes_abandoned,
            )

    def address_budget(self, address: str) -> AddressBudget | None:
        """The budget *address* shares between its connections (None: exempt)."""
        if self.is_exempt(address):
            return None
        assert self.budgets is not None
        return self.budgets.budget(address, self.clock())

    def measure_fds(self) -> None:
        """Fix :attr:`accept_ceiling` from the descriptors open now (before listening)."""
        reserve = self.config.fd_reserve
        if reserve is None:
            return
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        self.accept_ceiling = max(0, soft - reserve - open_fds())

    def admits_transport(self) -> bool:
        """Whether a TCP connection just accepted may stay (the descriptor reserve)."""
        return self.accept_ceiling is None or self.transports < self.accept_ceiling

    def take_address(self, counts: dict[str, int], address: str, limit: int) -> bool:
        """Count one more for *address* in *counts* unless it holds *limit* already (an
        exempt address is never counted)."""
        if self.is_exempt(address):
            return True
        held = counts.get(address, 0)
        if held >= limit:
            return False
        counts[address] = held + 1
        return True

    def is_exempt(self, address: str) -> bool:
        """Whether the per-address limits leave *address* uncounted."""
        known = self.exempt.get(address)
        if known is None:
            if len(self.exempt) >= 10_000:
                self.exempt.clear()
            known = self.exempt[address] = _in_networks(address, self.config.address_limit_exempt)
        return known

    def release_address(self, counts: dict[str, int], address: str, n: int = 1) -> None:
        left = counts.get(address, 0) - n
        if left > 0:
            counts[address] = left
        else:
            counts.pop(address, None)

    def new_client_id(self) -> str:
        self.next_id += 1
        return f"{id(self) & 0xFFFF:04x}-{self.next_id:x}"


def _call_soon(callback: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_soon(callback)


def _in_networks(address: str, networks: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def open_fds() -> int:
    """The descriptors this process holds now (Linux; 0 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return 0


ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class AcceptErrorLog:
    """An event loop exception handler that logs failed accepts once per *interval_s*.

    Out of descriptors, asyncio reports every failed accept with a traceback (a 512
    descriptor limit grew a log by 57 MB in 14 s); here each is counted in
    ``herald_accept_errors_total`` and one line per interval says how many there were.
    Anything else goes to the handler that was there before (or the loop's default).
    """

    def __init__(
        self,
        counter: Any,
        *,
        interval_s: float = 60.0,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = counter
        self._interval_s = interval_s
        self._previous = previous
        self._clock = clock
        self._last: float | None = None
        self.unlogged = 0
        self.lines = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if not (
            (isinstance(exc, OSError) and exc.errno in ACCEPT_ERRNOS)
            or message.startswith("socket.accept() out of system resource")
        ):
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._counter.inc()
        self.unlogged += 1
        now = self._clock()
        if self._last is None or now - self._last >= self._interval_s:
            self._last = now
            self.lines += 1
            log.error(
                "accept failed %d time(s) since the last report: %s (open descriptors: %d)",
                self.unlogged,
                exc if exc is not None else message,
                open_fds(),
            )
            self.unlogged = 0
