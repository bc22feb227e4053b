"""``herald-qa`` (qasite/__main__.py): migrate, and refuse bad settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qasite.__main__ import main
from tests.support.commands import clean_env, port_in_use, run_command


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


# The real command: one line and a non-zero exit code, never a traceback


def test_help_prints_the_usage_and_starts_nothing() -> None:
    for args in (["qasite", "--help"], ["qasite", "serve", "--help"]):
        ended = run_command(args, clean_env(), timeout_s=30)
        assert ended.returncode == 0
        assert ended.stdout.startswith("usage: herald-qa")
        assert ended.stderr == ""


def test_serve_refuses_a_redis_url_without_a_scheme_in_one_line(tmp_path: Path) -> None:
    env = clean_env(HERALD_QA_DATA_DIR=str(tmp_path), HERALD_REDIS_URL="localhost:6379")
    ended = run_command(["qasite", "serve"], env)
    assert ended.returncode == 2
    assert ended.last_line.startswith(
        "herald-qa: HERALD_REDIS_URL: 'localhost:6379' is not a Redis URL"
    ), ended.stderr


def test_serve_refuses_a_port_in_use_in_one_line_naming_it(tmp_path: Path) -> None:
    with port_in_use() as port:
        env = clean_env(HERALD_QA_DATA_DIR=str(tmp_path), HERALD_QA_PORT=str(port))
        ended = run_command(["qasite", "serve"], env)
    assert ended.returncode == 1
    assert ended.last_line == (
        f"herald-qa: cannot listen on 127.0.0.1:{port} (HERALD_QA_PORT / --port): "
        "Address already in use"
    ), ended.stderr


@pytest.mark.parametrize("content", [None, b"not a key"], ids=["missing", "not-a-pem"])
def test_serve_refuses_an_unusable_key_file_in_one_line(
    tmp_path: Path, content: bytes | None
) -> None:
    key = tmp_path / "socket-key.pem"
    if content is not None:
        key.write_bytes(content)
    env = clean_env(
        HERALD_QA_DATA_DIR=str(tmp_path / "data"), HERALD_QA_SOCKET_PRIVATE_KEY_FILE=str(key)
    )
    ended = run_command(["qasite", "serve"], env)
    assert ended.returncode == 2
    assert "Traceback" not in ended.stderr
    assert len(ended.stderr.splitlines()) == 1, ended.stderr
    assert "socket_private_key" in ended.last_line.lower(), ended.stderr
