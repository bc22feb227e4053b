"""``herald-qa`` (qasite/__main__.py): migrate, and refuse bad settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qasite.__main__ import main


def test_migrate_creates_the_schema_of_the_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    assert main(["migrate"]) == 0
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        [(version,)] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"users", "questions", "answers", "votes", "outbox"} <= tables
    assert version  # at head
    assert main(["migrate"]) == 0  # again: nothing to do


def test_bad_settings_exit_with_2_and_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HERALD_QA_PORT", "seventy")
    assert main(["migrate"]) == 2
    assert (
        capsys.readouterr().err
        == "herald-qa: HERALD_QA_PORT: cannot read 'seventy' as a whole number\n"
    )
