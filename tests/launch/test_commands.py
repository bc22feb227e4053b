"""Every command's ``--help`` prints its help and does nothing else; ``./herald`` included."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.commands import ROOT, clean_env, run_command


@pytest.mark.parametrize(
    ("module", "mentions"),
    [
        ("launch.embedded", "--socket-port"),
        ("launch.system", "--qa-workers"),
        ("launch.demo", "HERALD_REDIS_URL"),
    ],
)
def test_a_launcher_help_prints_the_usage_and_starts_nothing(module: str, mentions: str) -> None:
    ended = run_command([module, "--help"], clean_env(), timeout_s=30)
    assert ended.returncode == 0
    assert ended.stdout.startswith(f"usage: python -m {module}")
    assert mentions in ended.stdout
    assert ended.stderr == ""


@pytest.mark.parametrize(
    "args", [["run", "--help"], ["run", "--demo", "-h"], ["test", "--help"], ["lint", "--help"]]
)
def test_herald_help_prints_the_usage_and_installs_nothing(tmp_path: Path, args: list[str]) -> None:
    script = tmp_path / "herald"  # a copy: its own root has no .venv to create or reuse
    shutil.copy2(ROOT / "herald", script)
    ended = run_command([str(script), *args], clean_env(), cwd=tmp_path, timeout_s=30)
    assert ended.returncode == 0, ended.stderr
    assert "./herald run [options]" in ended.stdout
    assert "--socket-port N" in ended.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["herald"]
