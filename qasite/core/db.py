"""The database: one async engine, sessions for reading and for writing, and migrations.

SQLite (the embedded default) runs in WAL mode with foreign keys on. Its write transactions
begin with ``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes can fail
with "database is locked" when another writer got there between its read and its write
(the busy timeout does not apply to that upgrade), while an immediate one waits its turn.
Reads stay deferred, so readers never wait for writers. On PostgreSQL both kinds of session
are plain READ COMMITTED transactions; writes that must not race lock rows or rely on
unique constraints (see :mod:`qasite.domain.votes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from qasite.core.settings import Settings
from qasite.domain.page import SqliteStamps
from qasite.domain.tag_names import TAG_NAMES_INFO, TagNames

_IMMEDIATE = "herald_sqlite_immediate"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is turned off; on_begin issues BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def build_engine(settings: Settings) -> AsyncEngine:
    """The engine for *settings* (creating the data directory for the default SQLite file)."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The same pool as PostgreSQL's: with SQLAlchemy's default (5 + 10) a worker with more
        # than 5 requests at once opened an overflow connection for each (a thread, a file
        # open and four PRAGMAs) and closed it on return (bench/results/QA_CACHE.md).
        engine = create_async_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        _configure_sqlite(engine)
        return engine
    # No pre-ping: on asyncpg outside a transaction it costs three round trips per checkout
    # (BEGIN, ";", ROLLBACK), 29% of a worker's samples on a cached question page
    # (bench/results/QA_CACHE.md). A connection found dead when used invalidates the pool's
    # older connections (SQLAlchemy's optimistic disconnect handling), so after a PostgreSQL
    # restart only the requests already holding one fail; the question page retries once
    # (qasite/api/page.py). Connections are replaced after POOL_RECYCLE_S at most.
    return create_async_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_S,
    )


POOL_SIZE, POOL_OVERFLOW = 16, 4
"""PostgreSQL connections a process keeps, and opens beyond them under load (20 in all, as
before; 10 + 10 kept too few: with 16 clients on 2 workers one worker often held more than 10
requests at once, and each overflow connection was closed on return and opened again, 504
new PostgreSQL sessions in 15 s of cached question pages, bench/results/QA_CACHE.md)."""
POOL_RECYCLE_S = 1800
"""A pooled PostgreSQL connection is closed and replaced at its first checkout after this."""


NAMESPACES_INFO = "herald_namespaces"
"""The key of a write session's ``info`` holding the installation's channel namespaces."""


@dataclass(frozen=True, slots=True)
class Database:
    """The engine and its two session factories; built once at start-up."""

    engine: AsyncEngine
    reads: async_sessionmaker[AsyncSession]
    writes: async_sessionmaker[AsyncSession]
    autocommit_reads: async_sessionmaker[AsyncSession]
    """Sessions for reads whose statements each see what was committed when they start, as
    in the READ COMMITTED transaction of :attr:`reads`, without its ``BEGIN`` and
    ``ROLLBACK`` round trips: autocommit on PostgreSQL; on SQLite (in-process, a ``BEGIN``
    costs no round trip) the same as :attr:`reads`. For searches (qasite/api/routes/
    questions_list.py); never for a session that writes."""
    stamps: SqliteStamps | None = None
    """On a SQLite file, page stamps read without the pool (qasite/domain/page.py)."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @classmethod
    def open(cls, settings: Settings) -> Database:
        engine = build_engine(settings)
        info = {TAG_NAMES_INFO: TagNames()}  # the names of tags read in this process
        reads = async_sessionmaker(engine, expire_on_commit=False, info=info)
        autocommit_reads = reads
        if engine.dialect.name == "postgresql":
            autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
            autocommit_reads = async_sessionmaker(autocommit, expire_on_commit=False, info=info)
        writes = async_sessionmaker(
            engine,
            expire_on_commit=False,
            execution_options={_IMMEDIATE: True},
            info={NAMESPACES_INFO: settings.namespaces()},  # outbox.emit checks channels by it
        )
        database = engine.url.database
        stamps = None
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            stamps = SqliteStamps(database)
        return cls(engine, reads, writes, autocommit_reads, stamps)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with self.writes() as session, session.begin():
            yield session

    async def close(self) -> None:
        if self.stamps is not None:
            self.stamps.close()
        await self.engine.dispose()


def alembic_config() -> Config:
    """Alembic's configuration, pointing at the migrations shipped inside this package."""
    config = Config()
    location = resources.files("qasite").joinpath("migrations")
    config.set_main_option("script_location", str(location))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to *revision* (run at start-up and by ``herald-qa migrate``)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)
