"""The worker's settings: one frozen object built once at start-up (docs/configuration.md).

:func:`Settings.from_env` is the only place that reads the environment; the command line in
``socketsrv/__main__.py`` may override any field. Everything else receives values as
arguments whose names carry their units.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from socketsrv.protocol.auth import DEFAULT_ALGORITHMS


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message names it."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f"setting {name}: {why}")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    redis_url: str | None = None
    """None: the in-process bus (embedded default, one worker only)."""
    key_prefix: str = "herald"

    history_size: int = 500
    history_ttl_s: float = 900.0
    meta_ttl_s: float = 30 * 86400.0
    idempotency_ttl_s: float = 86400.0
    unsubscribe_grace_s: float = 5.0

    ping_interval_s: float = 25.0
    pong_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    sweep_interval_s: float = 1.0
    close_timeout_s: float = 5.0

    max_connections: int = 19000
    max_frame_bytes: int = 64 * 1024
    outbox_max_bytes: int = 1024 * 1024
    max_subscriptions: int = 128
    commands_per_s: float = 20.0
    commands_burst: int = 50
    flood_refusals: int = 50
    compression: bool = False
    origins: tuple[str, ...] | None = None
    """Allowed Origin values; None allows any (set it in production)."""

    jwt_public_key_pem: str | None = None
    jwt_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allow_anonymous: bool = True

    drain_timeout_s: float = 30.0
    drain_batch_size: int = 500
    drain_batch_interval_s: float = 0.05
    reconnect_spread_s: float = 5.0
    """Clients closed by a drain are told to wait a random 0..spread before reconnecting."""

    metrics_multiproc_dir: str | None = None
    demo: bool = False
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SettingsError("workers", "must be at least 1")
        if self.workers > 1 and self.redis_url is None:
            raise SettingsError("workers", "several workers need a Redis bus (REDIS_URL)")
        for name in ("history_size", "max_connections", "max_frame_bytes", "outbox_max_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(name, "must be positive")
        for name in (
            "ping_interval_s", "pong_timeout_s", "connect_timeout_s", "sweep_interval_s",
            "history_ttl_s", "meta_ttl_s", "idempotency_ttl_s", "close_timeout_s",
            "drain_timeout_s", "commands_per_s",
        ):  # fmt: skip
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SettingsError(name, "must be a positive number")
        for name in ("drain_batch_size", "max_subscriptions", "commands_burst", "flood_refusals"):
            if getattr(self, name) < 1:
                raise SettingsError(name, "must be positive")
        if not 0 <= self.port <= 65535:
            raise SettingsError("port", "must be 0..65535")
        if not self.host:
            raise SettingsError("host", "must not be empty")
        if not self.key_prefix:
            raise SettingsError("key_prefix", "must not be empty")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Build settings from ``HERALD_<FIELD>`` variables (and ``REDIS_URL``), then
        *overrides* (command-line flags), validating the result once."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get("HERALD_" + f.name.upper())
            if raw is None and f.name == "redis_url":
                raw = env.get("REDIS_URL")
            if raw is not None:
                values[f.name] = _convert(f.name, raw, cls.__dataclass_fields__[f.name].type)
        key_file = env.get("HERALD_JWT_PUBLIC_KEY_FILE")
        if key_file and "jwt_public_key_pem" not in values:
            try:
                with open(key_file, encoding="ascii") as fh:
                    values["jwt_public_key_pem"] = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError("jwt_public_key_file", str(exc)) from None
        return cls(**{**values, **overrides})


def _convert(name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if kind.startswith("bool"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(name, f"cannot read {raw!r} as {kind}") from None
    if raw:
        return raw
    if kind.endswith("| None"):
        return None  # an empty optional setting means "not set"
    raise SettingsError(name, "must not be empty")
