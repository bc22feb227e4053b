"""``./herald run`` over Redis (launch/system.py) starts the publish API as a helper, and runs
without it, in one line, when its port is taken."""

from __future__ import annotations

import socket
import sys

import pytest

from launch.system import _start_api
from publish_api.__main__ import checked_settings
from tests.publish_api.support import KEY


def test_a_taken_api_port_is_one_line_and_no_process(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"HERALD_API_KEYS": f"dev:{KEY}", "HERALD_API_PORT": str(port)}
        started = _start_api(sys.executable, checked_settings(env), env)
    assert started is None
    err = capsys.readouterr().err
    assert err.startswith(
        f"launch.system: the publish API is not started: cannot listen on 127.0.0.1:{port}"
        " (HERALD_API_PORT): "
    )
    assert err.count("\n") == 1
