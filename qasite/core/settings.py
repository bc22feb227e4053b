"""The Q&A core's settings: one frozen object, built once at start-up and passed down.

:meth:`Settings.from_env` reads the environment (the only place that does); every other
module receives the object. Development secrets (the connection-token key pair, the
access-token secret) are created by :func:`qasite.core.keys.with_secrets` at start-up, never
here, so building settings does no I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names it."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f"setting {name}: {why}")


class Environment(enum.Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the Q&A core can be configured with (docs/qa-core.md#configuration)."""

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path(".herald-data")
    """Where development keys, the SQLite database and attachments live by default."""
    database_url: str | None = None
    """SQLAlchemy URL; None: SQLite in ``data_dir/qa.sqlite3``. ``postgresql://`` URLs are
    rewritten to the asyncpg driver."""
    redis_url: str | None = None
    """None: the relay publishes to an in-process bus handed to the app (embedded mode)."""
    key_prefix: str = "herald"
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    """How browsers reach this service (verification links are built from it)."""
    socket_url: str = "ws://127.0.0.1:8000/ws"
    """How browsers reach the socket fleet (the live pages connect to it)."""
    client_dist_dir: Path | None = None
    """The built browser client the pages import (``npm run build`` in client-js/); None:
    ``client-js/dist`` of the source tree. The Docker image sets it to its own copy."""

    access_token_secret: str | None = None
    """HMAC secret of API access tokens (HS256); generated into ``data_dir`` in development."""
    access_token_ttl_s: float = 900.0
    refresh_token_ttl_s: float = 30 * 86400.0
    verification_ttl_s: float = 2 * 86400.0
    require_verified_email: bool = True
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536

    socket_private_key_pem: str | None = None
    """Ed25519 private key (PEM) that signs connection tokens; generated in development."""
    socket_public_key_pem: str | None = None
    socket_token_ttl_s: float = 300.0
    socket_token_audience: str | None = None
    socket_token_issuer: str | None = None

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    mail_from: str = "herald@localhost"

    attachments_dir: Path | None = None
    """None: ``data_dir/attachments``."""
    max_attachment_bytes: int = 2 * 1024 * 1024
    max_image_pixels: int = 40_000_000

    relay_poll_interval_s: float = 0.5
    relay_batch_size: int = 100
    relay_retry_max_s: float = 5.0
    outbox_retention_s: float = 86400.0
    """Published outbox rows older than this are deleted by the relay (hourly at most)."""
    publish_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "access_token_ttl_s",
            "refresh_token_ttl_s",
            "verification_ttl_s",
            "socket_token_ttl_s",
            "relay_poll_interval_s",
            "relay_retry_max_s",
            "outbox_retention_s",
            "publish_timeout_s",
        ):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise SettingsError(name, f"must be a positive finite number, not {value}")
        for name in (
            "max_attachment_bytes",
            "relay_batch_size",
            "max_image_pixels",
            "argon2_time_cost",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(name, "must be at least 1")
        if self.argon2_memory_kib < 8:
            raise SettingsError("argon2_memory_kib", "must be at least 8")
        if not 0 < self.port < 65536:
            raise SettingsError("port", f"must be 1-65535, not {self.port}")
        if self.environment is Environment.PRODUCTION:
            for name in ("access_token_secret", "socket_private_key_pem", "socket_public_key_pem"):
                if not getattr(self, name):
                    raise SettingsError(name, "must be configured in production")

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def sqlalchemy_url(self) -> str:
        """The async driver URL: aiosqlite for SQLite, asyncpg for PostgreSQL."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.data_dir / 'qa.sqlite3'}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://") :]
        return url

    @property
    def attachments_path(self) -> Path:
        return (
            self.attachments_dir
            if self.attachments_dir is not None
            else self.data_dir / "attachments"
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``HERALD_QA_*`` variables plus ``DATABASE_URL`` and ``REDIS_URL``.

        Each field ``name`` is read from ``HERALD_QA_<NAME>``; ``*_pem`` fields may instead
        name a file with ``HERALD_QA_<NAME without _pem>_FILE``. *overrides* win.
        """
        values: dict[str, Any] = {}
        if env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        if env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        for f in dataclasses.fields(cls):
            raw = env.get(f"HERALD_QA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw, f.type)
            if f.name.endswith("_pem"):
                path = env.get(f"HERALD_QA_{f.name[: -len('_pem')].upper()}_FILE")
                if path:
                    try:
                        values[f.name] = Path(path).read_text(encoding="ascii")
                    except (OSError, UnicodeDecodeError) as exc:
                        raise SettingsError(f.name, f"cannot read {path}: {exc}") from None
        values.update(overrides)
        return cls(**values)


def _convert(name: str, raw: str, annotation: Any) -> Any:
    text = str(annotation)
    try:
        if "Environment" in text:
            return Environment(raw.strip().lower())
        if "Path" in text:
            return Path(raw)
        if "bool" in text:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if "float" in text:
            return float(raw)
        if "int" in text:
            return int(raw)
    except ValueError as exc:
        raise SettingsError(name, str(exc)) from None
    return raw
