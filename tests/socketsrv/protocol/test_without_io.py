"""socketsrv/protocol/ does no I/O: it imports no asyncio, websockets or redis, directly or
through another module of socketsrv (socketsrv/errors.py is the one it may use)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import socketsrv.errors
import socketsrv.protocol

IO_PACKAGES = {"asyncio", "websockets", "redis", "uvloop"}
PROTOCOL_DIR = Path(socketsrv.protocol.__file__).parent


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "path",
    [*sorted(PROTOCOL_DIR.glob("*.py")), Path(socketsrv.errors.__file__)],
    ids=lambda p: p.name,
)
def test_a_protocol_module_imports_nothing_that_does_io(path: Path) -> None:
    modules = imported(path)
    assert not {m.split(".")[0] for m in modules} & IO_PACKAGES, modules
    ours = {m for m in modules if m.startswith("socketsrv.")}
    assert all(m.startswith("socketsrv.protocol") or m == "socketsrv.errors" for m in ours), ours
