"""Fixtures shared by the whole suite, and how the suite is spread over pytest-xdist workers.

``./herald test`` runs pytest with ``-n <workers> --dist loadgroup``: every test module is one
unit of work (its module- and session-scoped fixtures are built once, on one worker), and the
modules in :data:`HEAVY_FIRST` are handed out first, longest first, so that no long module
starts last. Without xdist nothing is grouped or reordered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

HEAVY_FIRST = (
    # Longest first (seconds of a serial run on a loaded 2-core machine).
    "tests/bench/test_bench_smoke.py",
    "tests/launch/test_failover_end_to_end.py",
)
"""Modules that take the longest, handed to workers before everything else."""

SHARED_GROUPS = {
    # One session-scoped shared_system (Redis, fleet, Q&A core) for these three modules.
    "tests/e2e/test_pages_width_a11y.py": "e2e-shared-system",
    "tests/e2e/test_pages_account.py": "e2e-shared-system",
    "tests/e2e/test_pages_inbox.py": "e2e-shared-system",
}
"""Modules that share a session-scoped fixture run on one worker, which builds it once."""


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _distributed_by_group(config: pytest.Config) -> bool:
    return bool(config.getoption("dist", "no") == "loadgroup")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a redis-server with ``redis``, so ``-m "not redis"`` works;
    under ``--dist loadgroup``, group the tests by module and put the heavy modules first."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
    if not _distributed_by_group(config):
        return
    for item in items:
        module = _module_of(item)
        item.add_marker(pytest.mark.xdist_group(SHARED_GROUPS.get(module, module)))
    rank = {module: i for i, module in enumerate(HEAVY_FIRST)}
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(SHARED_GROUPS.get(_module_of(item), _module_of(item)), i)
    items.sort(
        key=lambda item: (
            rank.get(_module_of(item), len(HEAVY_FIRST)),
            first_seen[SHARED_GROUPS.get(_module_of(item), _module_of(item))],
        )
    )


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
