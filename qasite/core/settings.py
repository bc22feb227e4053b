"""The Q&A core's settings: one frozen object, built once at start-up and passed down.

:meth:`Settings.from_env` (pydantic-settings, rules shared with the socket fleet in
:mod:`herald_contract.config`) reads the environment mapping the entry point hands it; every
other module receives the object. ``HERALD_QA_<FIELD>`` names a field; the Redis URL, the key
prefix, history retention and the log level are shared with the fleet (``HERALD_REDIS_URL``
or its alias ``REDIS_URL``, ``HERALD_HISTORY_SIZE``...), so the relay publishes with the
retention the fleet serves. Development secrets (the connection-token key pair, the
access-token secret) are created by :func:`qasite.core.keys.with_secrets` at start-up, never
here, so building settings does no I/O beyond reading a configured ``*_FILE``.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, model_validator

from herald_contract.config import (
    BusSettings,
    PositiveInt,
    PositiveSeconds,
    SettingProblem,
    SettingsError,
)

__all__ = ["Environment", "Settings", "SettingsError"]

Port = Annotated[int, Field(ge=1, le=65535)]


class Environment(enum.Enum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


class Settings(BusSettings):
    """Everything the Q&A core can be configured with (docs/qa-core.md#configuration)."""

    ENV_PREFIX: ClassVar[str] = "HERALD_QA_"
    ENV_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "database_url": ("HERALD_QA_DATABASE_URL", "DATABASE_URL")
    }
    OWN_NAME_FIRST: ClassVar[frozenset[str]] = frozenset({"redis_url", "key_prefix", "log_level"})

    environment: Annotated[Environment, BeforeValidator(_lower)] = Environment.DEVELOPMENT
    data_dir: Path = Path(".herald-data")
    """Where development keys, the SQLite database and attachments live by default."""
    database_url: str | None = None
    """SQLAlchemy URL; None: SQLite in ``data_dir/qa.sqlite3``. ``postgresql://`` URLs are
    rewritten to the asyncpg driver."""
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Port = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    """How browsers reach this service (verification links are built from it); when unset,
    ``http://<host>:<port>`` (127.0.0.1 for a wildcard host)."""
    socket_url: str = "ws://127.0.0.1:8000/ws"
    """How browsers reach the socket fleet (the live pages connect to it)."""
    client_dist_dir: Path | None = None
    """The built browser client the pages import (``npm run build`` in client-js/); None:
    ``client-js/dist`` of the source tree. The Docker image sets it to its own copy."""

    access_token_secret: str | None = None
    """HMAC secret of API access tokens (HS256); generated into ``data_dir`` in development."""
    access_token_ttl_s: PositiveSeconds = 900.0
    refresh_token_ttl_s: PositiveSeconds = 30 * 86400.0
    verification_ttl_s: PositiveSeconds = 2 * 86400.0
    require_verified_email: bool = True
    argon2_time_cost: PositiveInt = 3
    argon2_memory_kib: Annotated[int, Field(ge=8)] = 65536
    argon2_max_concurrency: PositiveInt = 2
    """Password hashes and checks computed at once per process, each in its own thread (one
    core and ``argon2_memory_kib`` each); the rest wait for a slot (issue 11, item 4)."""
    argon2_queue_timeout_s: PositiveSeconds = 2.0
    """How long a login or registration waits for a hashing slot before 503 busy."""
    argon2_max_waiting: Annotated[int, Field(ge=0)] = 32
    """Logins and registrations waiting for a slot at most; past it 503 busy at once."""
    auth_account_attempts: PositiveInt = 10
    """Failed logins of one account, and registrations of one email, per ``auth_window_s``;
    past it 429 with Retry-After, the right password included."""
    auth_address_attempts: PositiveInt = 100
    """Logins and registrations from one client address (IPv6: its /64) per
    ``auth_window_s``; past it 429 with Retry-After."""
    auth_window_s: PositiveSeconds = 900.0
    """The sliding window of both auth limits (shared through Redis when ``redis_url`` is set)."""

    socket_private_key_pem: str | None = None
    """Ed25519 private key (PEM) that signs connection tokens; generated in development."""
    socket_public_key_pem: str | None = None
    socket_token_ttl_s: PositiveSeconds = 300.0
    socket_token_audience: str | None = None
    socket_token_issuer: str | None = None

    smtp_host: str | None = None
    smtp_port: Port = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    mail_from: str = "herald@localhost"
    dev_mailbox: bool | None = None
    """Keep the mails sent without SMTP in memory and serve them at ``GET /dev/mailbox``, to
    loopback clients only, in development only (issue 11, item 10). None (unset) counts as
    off; ``./herald run`` in embedded mode turns it on unless set to false."""

    attachments_dir: Path | None = None
    """None: ``data_dir/attachments``."""
    max_attachment_bytes: PositiveInt = 2 * 1024 * 1024
    max_image_pixels: PositiveInt = 4096 * 4096
    """Pixels of an uploaded image, all frames of an animation together, read from its header
    before anything is decoded; past it 413 (issue 11, item 14: decompression bombs)."""
    uploads_per_day: PositiveInt = 100
    """Image uploads of one user in any 24 hours; past it 429 with Retry-After."""
    upload_quota_bytes: PositiveInt = 100 * 1024 * 1024
    """Bytes of one user's stored attachments in all; past it 413."""
    markdown_threads: PositiveInt = 2
    """Threads per process that render post bodies, off the event loop (issue 11, item 14);
    more renders wait for one."""
    max_request_body_bytes: PositiveInt = 1024 * 1024
    """Largest request body of every route but the uploads (which take
    ``max_attachment_bytes``); past it 413, before the body is read (issue 11, item 5)."""
    http_header_timeout_s: PositiveSeconds = 10.0
    """Time from a connection's opening (or its previous answer) to the end of the next
    request's headers; past it the connection is closed (408 if a request had begun)."""
    http_keep_alive_s: PositiveInt = 5
    """An idle keep-alive connection is closed after this many seconds (uvicorn's)."""
    worker_healthcheck_timeout_s: PositiveInt = 5
    """With ``--workers`` > 1: how long a worker may leave the supervisor's ping unanswered
    before it is killed and replaced (uvicorn's ``timeout_worker_healthcheck``; a thread of the
    worker answers it, so only a stopped or wedged worker misses it)."""
    http_max_connections: PositiveInt = 1000
    """Open HTTP connections per process (at most half the open-file limit); the next one is
    answered 503 and closed."""
    http_max_header_bytes: PositiveInt = 16 * 1024
    """Largest request line plus headers (h11's incomplete-event limit); past it 400."""
    metrics_port: Port | None = None
    """A listener of its own for ``/metrics`` (then 404 on ``port``), bound with SO_REUSEPORT
    by every worker; None: ``/metrics`` on ``port`` (issue 11, item 11). Production: set it."""
    metrics_host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    api_docs: bool = True
    """Serve ``/docs`` (Swagger UI from the package, strict CSP) and ``/openapi.json``;
    false: both answer 404."""

    relay_poll_interval_s: PositiveSeconds = 0.5
    relay_batch_size: PositiveInt = 100
    relay_retry_max_s: PositiveSeconds = 5.0
    outbox_retention_s: PositiveSeconds = 86400.0
    """Published outbox rows older than this are deleted by the relay (hourly at most)."""
    publish_timeout_s: PositiveSeconds = 5.0

    page_cache: bool = True
    """Keep the question page (``GET /api/questions/{id}``) cached: in each process (L1) and,
    with ``redis_url``, in Redis (L2). Every read checks the cached page against the question's
    versions in one query, so a cached page is never older than the last committed write."""
    page_cache_max_entries: PositiveInt = 20_000
    """Pages one process keeps at most (least recently used leave first)."""
    page_cache_max_bytes: PositiveInt = 64 * 1024 * 1024
    """Bytes of pages (their JSON) one process keeps at most."""
    page_cache_ttl_s: PositiveSeconds = 3600.0
    """A cached page is dropped this long after it was built (in the process and in Redis),
    whatever its versions say: a safety net, not what keeps pages fresh."""
    page_cache_redis: bool = True
    """With ``redis_url``: share built pages between processes and hosts through Redis (L2)."""
    page_cache_redis_timeout_s: PositiveSeconds = 0.25
    """Redis timeout of the L2 cache; a read that times out is a miss (the page is built)."""

    @model_validator(mode="before")
    @classmethod
    def _public_base_url_from_the_address(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("public_base_url"):
            host = str(data.get("host") or "127.0.0.1")
            shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            shown = f"[{shown}]" if ":" in shown else shown
            data = {**data, "public_base_url": f"http://{shown}:{data.get('port') or 8080}"}
        return data

    @model_validator(mode="after")
    def _production_has_its_secrets(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            for name in ("access_token_secret", "socket_private_key_pem", "socket_public_key_pem"):
                if not getattr(self, name):
                    raise SettingProblem(name, "must be configured in production")
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def serves_dev_mailbox(self) -> bool:
        """``dev_mailbox`` set to true, in development (production never serves it)."""
        return self.dev_mailbox is True and self.is_development

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
