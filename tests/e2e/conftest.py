"""Fixtures of the browser tests: Chromium, the built client, the running system, users.

Chromium is Debian's (/usr/bin/chromium, or CHROMIUM_PATH): playwright's own browser download
is unreachable here. Without it the tests fail with a clear message under CI=true, and are
skipped with that reason otherwise (a developer machine without a browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from tests.e2e.system import ROOT, LiveSystem, User
from tests.support.client_js import built_client_js
from tests.support.redis_server import RedisServer

CLIENT_JS = ROOT / "client-js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "correct horse battery"


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        _missing(
            f"no Chromium at {path}: install it with `apt-get install -y chromium` "
            "(or set CHROMIUM_PATH)"
        )
    return path


@pytest.fixture(scope="session")
def client_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """client-js/dist, built once per session when it is missing or older than src/
    (tests/support/client_js.py: the xdist workers take turns)."""
    return built_client_js(tmp_path_factory, _missing)


@pytest.fixture(scope="module")
def browser(chromium_path: str, client_build: Path) -> Iterator[Browser]:
    """One Chromium per test module. Not per session: playwright's sync API runs an event
    loop in this thread while it is open, and the suite's asyncio tests that come after the
    browser tests need the thread's loop free."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def system(redis_server: RedisServer, tmp_path: Path) -> Iterator[LiveSystem]:
    """Redis (the suite's fixture), the fleet (2 workers) and the Q&A core, for one test."""
    live = LiveSystem.start(tmp_path, redis_server.url)
    try:
        yield live
    finally:
        live.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """``new_context()`` opens a browser context (one person's browser); all closed at the end."""
    contexts: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def make_user(system: LiveSystem, name: str) -> User:
    return system.qa.verified_user(f"{name.lower()}@example.com", PASSWORD, name)


def log_in(page: Page, system: LiveSystem, user: User, next_path: str = "/") -> None:
    """Through the login form, as a person would; ends on *next_path*."""
    page.goto(f"{system.qa.url}/login?next={next_path}")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{system.qa.url}{next_path}")


@pytest.fixture(scope="session")
def shared_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSystem]:
    """One system (Redis, fleet, Q&A core) for the page modules that only add data and never
    stop a part (test_pages_width_a11y, test_pages_account, test_pages_inbox): started once,
    each module's users have their own emails."""
    tmp = tmp_path_factory.mktemp("shared-system")
    redis = RedisServer.launch(tmp / "redis")
    try:
        system = LiveSystem.start(tmp, redis.url)
        try:
            yield system
        finally:
            system.close()
    finally:
        redis.close()


PG_ADMIN_URL = os.environ.get("HERALD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The PostgreSQL server of the tests (as tests/qasite/conftest.py reads it)."""


def _pg_admin(sql: str) -> None:
    """Run *sql* on the server's admin database. In a thread of its own: playwright's sync
    API may be running an event loop in this one."""

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database (the Q&A core migrates it at start),
    dropped at the end. Without a server: skipped, or failed under CI=true."""
    name = f"herald_e2e_{secrets.token_hex(4)}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _missing(f"no PostgreSQL server at {PG_ADMIN_URL} ({exc}); set HERALD_TEST_PG_URL")
    try:
        yield f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
