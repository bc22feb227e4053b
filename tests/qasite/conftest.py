"""Fixtures of the Q&A core tests: every test that takes ``qa`` runs on SQLite and PostgreSQL.

PostgreSQL: one database with a random name per test session on ``HERALD_TEST_PG_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``, the server this machine kind
runs), migrated once, emptied before each test, dropped at the end. When no server answers
there, the PostgreSQL half of each test skips with the reason, except under ``CI=true``, where
it fails: a CI run must not pass with half of its database tests unrun.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from qasite.core.db import Database, migrate
from qasite.core.settings import Settings
from tests.qasite.support import QA, no_server, qa_settings, running_qa, truncate

PG_ADMIN_URL = os.environ.get("HERALD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _url_of(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a migrated PostgreSQL database owned by this test session."""
    name = f"herald_qa_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        no_server(f"no PostgreSQL server at {PG_ADMIN_URL} ({exc}); set HERALD_TEST_PG_URL")
    url = _url_of(name)

    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    db = Database.open(Settings(database_url=url))
    try:
        await migrate(db.engine)
    finally:
        await db.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (cheaper than migrating each time)."""
    path = tmp_path_factory.mktemp("qa-template") / "qa.sqlite3"
    asyncio.run(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "qa.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(truncate(url))
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return qa_settings(tmp_path, database_url)


@pytest.fixture
async def qa(settings: Settings) -> AsyncIterator[QA]:
    async with running_qa(settings, migrate_on_start=False) as running:
        yield running
