"""What importing the contract pulls in: the in-process bus runs without a Redis client.

Checked in a fresh interpreter, since this test process has imported redis long ago.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running *statement*."""
    listing = "print(' '.join({m.split('.')[0] for m in sys.modules}))"
    code = f"import sys\n{statement}\n{listing}"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(result.stdout.split())


def test_the_memory_bus_imports_no_redis_client() -> None:
    assert "redis" not in imported_after("import herald_contract.memory_bus")


@pytest.mark.parametrize(
    "module",
    ["herald_contract.memory_bus", "herald_contract.redis_bus", "herald_contract.errors"],
)
def test_the_contract_imports_nothing_else_of_heralds(module: str) -> None:
    ours = {"publisher", "socketsrv", "qasite", "launch"}
    assert imported_after(f"import {module}") & ours == set()
