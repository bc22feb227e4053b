"""``python -m socketsrv`` (socketsrv/__main__.py, socketsrv/fleet.py): how it refuses to start.

Each failure runs the real command and checks that it ends in one line naming the setting or
the port, with a non-zero exit code and no traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from socketsrv.fleet import _reserve_port
from socketsrv.settings import Settings
from tests.support.commands import clean_env, port_in_use, run_command
from tests.support.redis_server import free_port

NOT_A_URL = "REDIS_URL: '127.0.0.1:6379' is not a Redis URL"


def test_help_prints_the_usage_and_starts_nothing() -> None:
    ended = run_command(["socketsrv", "--help"], clean_env(), timeout_s=30)
    assert ended.returncode == 0
    assert ended.stdout.startswith("usage: herald-socketsrv")
    assert "HERALD_REDIS_URL" in ended.stdout
    assert ended.stderr == ""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_redis_url_without_a_scheme_is_refused_in_one_line(workers: str) -> None:
    env = clean_env(REDIS_URL="127.0.0.1:6379")
    ended = run_command(["socketsrv", "--workers", workers, "--port", "0"], env)
    assert ended.returncode == 2
    assert ended.last_line.startswith(f"herald-socketsrv: {NOT_A_URL}"), ended.stderr
    assert "Traceback" not in ended.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_refused_in_one_line_naming_it(workers: str) -> None:
    env = clean_env(HERALD_REDIS_URL="redis://127.0.0.1:1/0")  # never reached: refused first
    with port_in_use() as port:
        ended = run_command(["socketsrv", "--workers", workers, "--port", str(port)], env)
    assert ended.returncode == 1, ended.stderr
    assert ended.last_line == (
        f"herald-socketsrv: cannot listen on 127.0.0.1:{port} (HERALD_PORT / --port): "
        "Address already in use"
    ), ended.stderr
    assert "Traceback" not in ended.stderr


def test_an_unreadable_public_key_file_is_refused_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key.pem"
    ended = run_command(["socketsrv"], clean_env(HERALD_JWT_PUBLIC_KEY_FILE=str(missing)))
    assert ended.returncode == 2
    assert ended.last_line.startswith(
        f"herald-socketsrv: HERALD_JWT_PUBLIC_KEY_FILE: cannot read {missing}"
    ), ended.stderr


def test_a_bad_flag_value_is_refused_naming_the_setting() -> None:
    ended = run_command(["socketsrv", "--port", "eighty"], clean_env())
    assert ended.returncode == 2
    assert (
        ended.last_line == "herald-socketsrv: setting port: cannot read 'eighty' as a whole number"
    )


def test_the_supervisor_binds_with_so_reuseaddr_so_a_restart_binds_at_once() -> None:
    reserved = _reserve_port(Settings(port=free_port()))
    try:
        assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
    finally:
        reserved.close()
