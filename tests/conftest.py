"""Fixtures shared by the whole suite, and the order of the modules on pytest-xdist workers.

``./herald test`` runs pytest with ``-n <workers> --dist loadfile --no-loadscope-reorder``:
every test module is one unit of work (its module-scoped fixtures are built once, on one
worker), handed out in collection order, which on a worker puts the units of
:data:`HEAVY_FIRST` first, longest first, so that no long one starts last. (``loadgroup``
cannot group here: pytest 9 ignores the node id suffix xdist 3.8 gives a group.) Without
xdist the order is pytest's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

SHARED_GROUPS = {
    # One session-scoped shared_system (Redis, fleet, Q&A core) for these three modules.
    "tests/e2e/test_pages_width_a11y.py": "e2e-shared-system",
    "tests/e2e/test_pages_account.py": "e2e-shared-system",
    "tests/e2e/test_pages_inbox.py": "e2e-shared-system",
}
"""Modules that share a session-scoped fixture, kept next to each other: when one worker
takes two or three of them, it builds the fixture once."""

HEAVY_FIRST = (
    # Longest first: the seconds its tests took in all in one run on 3 workers of a 2-core
    # machine at load 10-17 (a third to a sixth of that on a quiet machine).
    "tests/bench/test_bench_smoke.py",  # 154
    "e2e-shared-system",  # 136
    "tests/e2e/test_live_pages.py",  # 110
    "tests/e2e/test_page_hostile_data.py",  # 99
    "tests/qasite/api/test_openapi_fuzz.py",  # 84
    "tests/launch/test_failover_end_to_end.py",  # 74
    "tests/launch/test_system.py",  # 68
    "tests/e2e/test_pages_finding.py",  # 65
    "tests/bench/test_qa_http.py",  # 50
    "tests/launch/test_fleet_over_redis_end_to_end.py",  # 47
    "tests/qasite/core/test_metrics_workers.py",  # 43
    "tests/bench/test_dropped_smoke.py",  # 40
    "tests/herald_contract/test_sentinel.py",  # 40
    "tests/test_dockerfile.py",  # 40
    "tests/herald_contract/test_redis_cluster_failover.py",  # 38
    "tests/e2e/test_pages_posts.py",  # 35
    "tests/e2e/test_pages_errors_http.py",  # 32
    "tests/launch/test_hosts.py",  # 31
    "tests/qasite/domain/test_search.py",  # 30
    "tests/bench/test_soak_smoke.py",  # 28
    "tests/launch/test_cluster_up.py",  # 27
    "tests/socketsrv/test_fleet.py",  # 26
)
"""Modules (or the names in :data:`SHARED_GROUPS`) that take the longest, handed to workers
before everything else so that none of them starts last."""


def _unit_of(item: pytest.Item) -> str:
    module = item.nodeid.split("::", 1)[0]
    return SHARED_GROUPS.get(module, module)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a redis-server with ``redis``, so ``-m "not redis"`` works;
    on an xdist worker, put the longest units first (every worker orders them alike)."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    units = {id(item): _unit_of(item) for item in items}
    rank = {unit: i for i, unit in enumerate(HEAVY_FIRST)}
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(units[id(item)], i)
    # A stable sort: each module's tests stay together and in their order.
    items.sort(
        key=lambda item: (rank.get(units[id(item)], len(HEAVY_FIRST)), first_seen[units[id(item)]])
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
