"""HAProxy for the tests: the binary (missing fails under CI, skips elsewhere) and a started
topology of fleet hosts behind it (launch/hosts.py), torn down whatever the test did."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from launch.hosts import (
    FAST_CHECKS,
    Balancer,
    HostAddress,
    HostsError,
    Topology,
    haproxy_binary,
)
from tests.support.redis_server import free_port


def require_haproxy() -> str:
    """The haproxy binary. Missing: the test fails under ``CI=true`` (``./herald test``
    installs it) and is skipped on a developer's machine without it."""
    try:
        return haproxy_binary()
    except HostsError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def short_run_dir() -> Path:
    """A fresh directory with a short path: a unix socket's path holds at most 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="herald-lb-"))


def loopback_hosts(count: int) -> list[HostAddress]:
    """Hosts h1.. on 127.0.0.2, 127.0.0.3, ..., each on a port free on its address, with its
    health listener (where HAProxy checks, as deployed) on another."""
    return [
        HostAddress(f"h{i + 1}", address, free_port(address), free_port(address))
        for i, address in enumerate(f"127.0.0.{i + 2}" for i in range(count))
    ]


@contextlib.contextmanager
def running_topology(
    *, hosts: int, workers: int, redis_url: str, run_dir: Path, **env: str
) -> Iterator[Topology]:
    """*hosts* fleet hosts of *workers* workers on one Redis behind HAProxy (fast health
    checks), every process stopped on exit."""
    require_haproxy()
    balancer = Balancer("127.0.0.1", free_port(), free_port(), run_dir)
    topology = Topology(
        loopback_hosts(hosts),
        balancer,
        workers=workers,
        env={**os.environ, "HERALD_REDIS_URL": redis_url, **env},
        checks=FAST_CHECKS,
    )
    try:
        topology.start()
        yield topology
    except HostsError as exc:
        logs = "\n".join(f"--- {h.spec.name}\n{h.log_tail()}" for h in topology.hosts)
        raise AssertionError(f"{exc}\n--- haproxy\n{topology.lb.log_tail()}\n{logs}") from exc
    finally:
        topology.close()
