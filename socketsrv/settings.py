"""The socket fleet's settings: one frozen object built once at start-up (docs/configuration.md).

:meth:`Settings.from_env` (pydantic-settings, rules shared with the Q&A core in
:mod:`herald_contract.config`) is the only reader of the environment, which the entry point
passes in; the command line in ``socketsrv/__main__.py`` may override any field. Everything
else receives values as arguments whose names carry their units.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, model_validator

from herald_contract.config import (
    BusSettings,
    CommaTuple,
    NonEmpty,
    PositiveInt,
    PositiveSeconds,
    SettingProblem,
    SettingsError,
)
from socketsrv.protocol.auth import DEFAULT_ALGORITHMS

__all__ = ["Settings", "SettingsError"]

Port = Annotated[int, Field(ge=0, le=65535)]

PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)


class Settings(BusSettings):
    """Every setting of a worker and of the fleet; ``HERALD_<FIELD>`` in the environment."""

    ENV_PREFIX: ClassVar[str] = "HERALD_"

    host: NonEmpty = "127.0.0.1"
    port: Port = 8000
    workers: PositiveInt = 1
    unsubscribe_grace_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0

    ping_interval_s: PositiveSeconds = 25.0
    pong_timeout_s: PositiveSeconds = 10.0
    connect_timeout_s: PositiveSeconds = 10.0
    """From the HTTP 101 (the end of the opening handshake) to the connect command."""
    sweep_interval_s: PositiveSeconds = 1.0
    position_check_interval_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 10.0
    """How often each live channel's stream is compared with the bus's position
    (socketsrv/positions.py); 0 turns position checks off."""
    close_timeout_s: PositiveSeconds = 5.0

    max_connections: PositiveInt = 19000
    max_handshakes: Annotated[int, Field(ge=0)] = 500
    """Opening handshakes a worker runs at once; past it upgrade requests wait their turn
    (socketsrv/admission.py); 0: no limit."""
    handshake_queue: Annotated[int, Field(ge=0)] = 10_000
    """Upgrade requests that may wait for a turn; past it HTTP 503 with Retry-After."""
    max_frame_bytes: PositiveInt = 64 * 1024
    outbox_max_bytes: PositiveInt = 1024 * 1024
    conflate_mark_bytes: Annotated[int, Field(ge=0)] | None = None
    """Past this many bytes unsent on a connection, a publication with a conflation key
    supersedes a queued one with the same key (docs/protocol.md#conflation); None:
    ``outbox_max_bytes / 64`` (16 KiB); 0: never conflate."""
    send_lowat_bytes: Annotated[int, Field(ge=0)] = 16 * 1024
    """``TCP_NOTSENT_LOWAT`` of each connection: the most the kernel holds that it has not
    sent (the rest waits in the worker, bounded and conflated); 0: the kernel's default."""
    max_subscriptions: PositiveInt = 128
    commands_per_s: PositiveSeconds = 20.0
    commands_burst: PositiveInt = 50
    flood_refusals: PositiveInt = 50
    replay_bytes_per_s: PositiveInt = 64 * 1024
    replay_burst_bytes: PositiveInt = 1024 * 1024
    """Recovery replay budget per connection (a byte bucket); past it recovery is "failed"."""
    telemetry_interval_s: PositiveSeconds = 30.0
    """At most one client telemetry report per connection per interval (docs/protocol.md)."""
    max_connections_per_address: PositiveInt = 200
    """Per worker (the kernel spreads connections over workers); past it the upgrade gets 429."""
    max_subscriptions_per_address: PositiveInt = 5000
    """Per worker; past it a subscribe gets error 430."""
    address_connections_per_s: PositiveSeconds = 10.0
    address_connections_burst: PositiveInt = 100
    """New websockets per client address (per worker), a token bucket; past it HTTP 429."""
    address_commands_per_s: PositiveSeconds = 200.0
    address_commands_burst: PositiveInt = 1000
    """Commands (and pings, pongs, fragments) of all the connections of one client address
    together (per worker); past it error 429, counted towards the 4006 flood close."""
    address_replay_bytes_per_s: PositiveInt = 1024 * 1024
    address_replay_burst_bytes: PositiveInt = 16 * 1024 * 1024
    """Recovery replay bytes of all the connections of one client address together (per
    worker); past it recovery "failed"."""
    max_channels: PositiveInt = 100_000
    """Distinct channels a worker holds (idle ones in their grace count); past it error 503."""
    proxy_protocol: bool = False
    """Every connection starts with a PROXY header (v1 or v2) naming the client's address."""
    trusted_proxies: CommaTuple = ()
    """Peer addresses whose X-Forwarded-For names the client (its rightmost untrusted entry)."""
    address_limit_exempt: CommaTuple = PRIVATE_NETWORKS
    """Client addresses or networks the per-address limits do not count: by default this host
    and private networks (a balancer that does not pass the client's address, load tests)."""
    fd_reserve: Annotated[int, Field(ge=0)] = 64
    """Descriptors kept free: a connection is closed at accept past RLIMIT_NOFILE minus this."""
    compression: bool = False
    origins: CommaTuple | None = None
    """Allowed Origin values; None allows any (set it in production)."""

    jwt_public_key_pem: str | None = None
    jwt_algorithms: CommaTuple = DEFAULT_ALGORITHMS
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allow_anonymous: bool = True

    drain_grace_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    """SIGTERM: how long /readyz answers 503 while the worker still accepts, before it stops
    listening and drains (0: at once, as a load balancer told first wants)."""
    drain_timeout_s: PositiveSeconds = 30.0
    drain_batch_size: PositiveInt = 500
    drain_batch_interval_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.05
    reconnect_spread_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0
    """Clients closed by a drain, a lost stream or shedding (4000, 4003, 4007) are told to wait
    a random 0..spread before reconnecting (the ``retry_ms`` hint)."""
    rebalance_interval_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0
    """How often a fleet worker compares its connections with its share (socketsrv/loadshare.py);
    0 turns shedding off. Only with ``workers > 1``."""
    rebalance_tolerance: Annotated[float, Field(ge=1, allow_inf_nan=False)] = 1.25
    """A worker sheds only past this many times the fair share (and 10 connections over it)."""
    rebalance_share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.1
    """At most this share of a worker's connections is closed (4007) per interval."""

    metrics_multiproc_dir: str | None = None
    metrics_port: Port | None = None
    """A listener of its own for /metrics (then 404 on the public port); None: /metrics on
    the public port. Production: set it, with metrics_host an internal address."""
    metrics_host: NonEmpty = "127.0.0.1"
    health_port: Port | None = None
    """/healthz and /readyz also on a listener of their own, answered by a thread: a storm of
    handshakes on the public port cannot delay them (socketsrv/health.py). None: off."""
    health_host: NonEmpty = "127.0.0.1"

    @property
    def conflate_mark(self) -> int:
        """``conflate_mark_bytes`` resolved (0: off)."""
        mark = self.conflate_mark_bytes
        return self.outbox_max_bytes // 64 if mark is None else mark

    @model_validator(mode="after")
    def _conflate_mark_below_the_bound(self) -> Settings:
        if self.conflate_mark_bytes is not None and self.conflate_mark >= self.outbox_max_bytes:
            raise SettingProblem(
                "conflate_mark_bytes", "must be below outbox_max_bytes (0 turns conflation off)"
            )
        return self

    @model_validator(mode="after")
    def _several_workers_need_redis(self) -> Settings:
        if self.workers > 1 and self.redis_url is None:
            raise SettingProblem(
                "workers", "several workers need a Redis bus (set HERALD_REDIS_URL)"
            )
        return self
