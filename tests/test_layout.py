"""The layout is the architecture: imports between Herald's packages point one way.

The allowed arrows are import-linter contracts in pyproject.toml ([tool.importlinter]) and
drawn in docs/architecture.md. The second test shows the check is not vacuous: the same
contracts, run on a copy of the tree with one reverse import added, fail and name it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("herald_contract", "publisher", "socketsrv", "qasite", "publish_api", "launch")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with *root*'s pyproject.toml on the packages found in *root*."""
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(lint), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_tree(destination: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", destination / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            REPO / package,
            destination / package,
            ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "*.lua"),
        )


def test_every_package_imports_only_the_packages_below_it() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_reverse_import_from_the_contract_into_the_fleet_is_refused(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    keys = tmp_path / "herald_contract" / "keys.py"
    keys.write_text(keys.read_text() + "\nimport socketsrv.settings  # a reverse import\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    assert "herald_contract.keys -> socketsrv.settings" in result.stdout, result.stdout
