"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a redis-server with ``redis``, so ``-m "not redis"`` works."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server on a free port, killed at teardown whatever the test did.

    The handle has ``url``, ``port``, ``start()``, ``stop()``, ``restart(keep_data)`` and
    ``client()`` (a synchronous redis client for set-up and fault injection).
    """
    server = RedisServer.launch(tmp_path / "redis")
    try:
        yield server
    finally:
        server.close()
