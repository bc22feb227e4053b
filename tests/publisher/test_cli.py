"""herald-publish (publisher/cli.py): one event from a shell."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from herald_contract.envelope import decode_envelope
from herald_contract.keys import KeyLayout
from publisher.cli import main
from tests.support.redis_server import RedisServer, free_port


def published(server: RedisServer, channel: str) -> list[Any]:
    entries: Any = server.client().xrange(KeyLayout().history(channel))
    return [decode_envelope(fields[b"p"]).data for _, fields in entries]


def test_a_publish_prints_its_position_as_json(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["question:42", '{"score": 7}', "--redis-url", redis_server.url])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out == {"channel": "question:42", "epoch": out["epoch"], "offset": 1, "duplicate": False}
    assert published(redis_server, "question:42") == [{"score": 7}]


def test_a_repeated_event_id_is_reported_as_a_duplicate(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["tag:python", "1", "--redis-url", redis_server.url, "--event-id", "q:1"]
    assert main(args) == 0
    assert main(args) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (second["offset"], second["duplicate"]) == (first["offset"], True)


def test_data_can_come_from_stdin(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('["from", "stdin"]\n'))
    assert main(["user:7", "-", "--redis-url", redis_server.url]) == 0
    assert published(redis_server, "user:7") == [["from", "stdin"]]


def test_redis_url_comes_from_the_environment_unless_given(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    assert main(["questions:new", "null"]) == 0
    assert published(redis_server, "questions:new") == [None]


def test_the_shared_settings_govern_the_publication(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "HERALD_REDIS_URL": redis_server.url,
        "REDIS_URL": "redis://127.0.0.1:1/0",  # the alias loses to the shared name
        "HERALD_KEY_PREFIX": "site",
        "HERALD_HISTORY_SIZE": "3",
        "HERALD_HISTORY_TTL_S": "60",
    }
    for n in range(5):
        assert main(["question:5", str(n)], env=env) == 0, capsys.readouterr().err
    history = KeyLayout("site").history("question:5")
    client = redis_server.client()
    assert client.xlen(history) == 3
    assert 0 < client.pttl(history) <= 60_000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HERALD_HISTORY_SIZE": "many"}, "HERALD_HISTORY_SIZE: cannot read 'many' as a whole"),
        ({"HERALD_HISTORY_SIZE": "0"}, "HERALD_HISTORY_SIZE: history_size must be at least 1"),
        ({"HERALD_HISTORY_TTL_S": "-1"}, "HERALD_HISTORY_TTL_S: history_ttl_s must be positive"),
        ({"HERALD_META_TTL_S": "inf"}, "HERALD_META_TTL_S: 'inf' is not a finite number"),
    ],
)
def test_a_shared_setting_that_cannot_work_exits_2_naming_the_variable(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["question:1", "1"], env=env) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["question:abc", "1"], "invalid channel"),
        (["question:1", "{nope"], "not valid JSON"),
        (["question:1", "NaN"], "not JSON-compatible"),
        (["question:1", "1", "--event-id", "has space"], "event id"),
        (["question:1", "1", "--redis-url", "ftp://x"], "invalid Redis URL"),
    ],
)
def test_invalid_input_exits_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_an_unreachable_redis_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["question:1", "1", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"])
    assert code == 1
    assert "failed" in capsys.readouterr().err


def test_python_dash_m_publisher_runs_the_same_command(redis_server: RedisServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "publisher", "question:9", '"hi"', "--redis-url", redis_server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["offset"] == 1
