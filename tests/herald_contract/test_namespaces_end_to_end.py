"""A changed namespace file is obeyed by the fleet, the publisher and the Q&A core (issue 14,
item 1, done-when): the shipped file plus a new ``feed`` kind (token-granted, its own
retention and size) and a smaller history for ``question``, given to each program only as
``HERALD_NAMESPACES_FILE``, on a real Redis. No code knows the new kind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald_contract.errors import InvalidChannel
from herald_contract.keys import KeyLayout
from herald_contract.namespaces_file import DEFAULT_FILE
from publisher.publish import Publisher
from tests.qasite.support import qa_settings, running_qa
from tests.support.client import ChannelLog, HeraldTestClient
from tests.support.fleet import ROOT, Fleet
from tests.support.redis_server import RedisServer
from tests.support.tokens import TokenIssuer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

KEYS = KeyLayout()
FEED = """
[[namespace]]
name = "feed"
description = "a follower feed of a second application"
subscribe = "token"
key = { type = "name", max_length = 20, chars = "a-z0-9_" }
history_size = 2
history_ttl_s = 60
max_data_bytes = 200
"""


@pytest.fixture
def namespaces_file(tmp_path: Path) -> Path:
    shipped = (ROOT / "herald_contract" / DEFAULT_FILE).read_text()
    assert shipped.count('name = "question"\n') == 1
    changed = shipped.replace('name = "question"\n', 'name = "question"\nhistory_size = 3\n')
    path = tmp_path / "namespaces.toml"
    path.write_text(changed + FEED)
    return path


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def fleet(
    redis_server: RedisServer, tmp_path: Path, namespaces_file: Path, issuer: TokenIssuer
) -> Iterator[Fleet]:
    running = Fleet(
        redis_url=redis_server.url,
        workers=1,
        log=tmp_path / "fleet.log",
        HERALD_NAMESPACES_FILE=str(namespaces_file),
        HERALD_JWT_PUBLIC_KEY_PEM=issuer.public_pem,
    )
    running.wait_ready()
    yield running
    running.close()


def herald_publish(
    channel: str, data: object, redis_server: RedisServer, namespaces_file: Path
) -> subprocess.CompletedProcess[str]:
    """``python -m publisher`` with the shared variables only, as an operator runs it."""
    env = {
        **os.environ,
        "HERALD_REDIS_URL": redis_server.url,
        "HERALD_NAMESPACES_FILE": str(namespaces_file),
    }
    return subprocess.run(
        [sys.executable, "-m", "publisher", channel, json.dumps(data)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_the_fleet_and_the_publisher_obey_a_new_kind_from_the_file(
    fleet: Fleet, redis_server: RedisServer, namespaces_file: Path, issuer: TokenIssuer
) -> None:
    alice = HeraldTestClient(fleet.url, token=issuer.token("7", channels=["feed:alice"]))
    stranger = HeraldTestClient(fleet.url)
    await alice.open()
    await stranger.open()
    try:
        assert (await alice.subscribe("feed:alice"))["type"] == "reply"
        refused = await alice.request({"op": "subscribe", "channel": "feed:bob"})
        assert refused["code"] == 403  # not granted by the token's channels claim
        refused = await stranger.request({"op": "subscribe", "channel": "feed:alice"})
        assert refused["code"] == 403
        assert (await alice.subscribe("question:1"))["type"] == "reply"  # the Q&A kinds stay

        for n in range(5):
            done = await asyncio.to_thread(
                herald_publish, "feed:alice", {"n": n}, redis_server, namespaces_file
            )
            assert done.returncode == 0, done.stderr
        await eventually(lambda: len(alice.data("feed:alice")) == 5)
        assert alice.data("feed:alice") == [{"n": n} for n in range(5)]

        redis = redis_server.client()
        assert redis.xlen(KEYS.history("feed:alice")) == 2  # the file's history_size
        assert 0 < redis.pttl(KEYS.history("feed:alice")) <= 60_000  # and its history_ttl_s
        too_big = await asyncio.to_thread(
            herald_publish, "feed:alice", {"text": "x" * 300}, redis_server, namespaces_file
        )
        assert too_big.returncode == 2
        assert "more than 200" in too_big.stderr

        late = HeraldTestClient(fleet.url, token=issuer.token("8", channels=["feed:*"]))
        behind = late.channels["feed:alice"] = ChannelLog(alice.channels["feed:alice"].epoch, 1)
        await late.open()
        try:
            await late.subscribe("feed:alice", recover=True)  # needs 2-5; only 4 and 5 are kept
        finally:
            await late.close()
        assert behind.recoveries == ["failed"]
    finally:
        await alice.close()
        await stranger.close()
    with pytest.raises(InvalidChannel, match="unknown kind"):
        async with Publisher(redis_server.url) as shipped_only:  # no file: the shipped kinds
            await shipped_only.publish("feed:alice", {"n": 0})


async def test_the_qa_core_publishes_with_the_files_retention(
    tmp_path: Path, redis_server: RedisServer, namespaces_file: Path
) -> None:
    settings = qa_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'qa.sqlite3'}",
        redis_url=redis_server.url,
        namespaces_file=str(namespaces_file),
    )
    async with running_qa(settings, record=False) as qa:
        asker, answerer = await qa.signup(), await qa.signup()
        question = await qa.ask(asker)
        for n in range(5):
            await qa.answer(answerer, question["id"], body=f"Answer {n}: use pathlib.")
        await qa.settle()
    redis = redis_server.client()
    channel = f"question:{question['id']}"
    top = int(redis.hget(KEYS.meta(channel), "top") or 0)
    assert top >= 5
    assert redis.xlen(KEYS.history(channel)) == 3  # the file's history_size for question
    assert redis.xlen(KEYS.history("questions:new")) == 1  # the installation's (500)


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("socketsrv", ["--port", "0"]),
        ("publisher", ["question:1", "{}"]),
        ("qasite", ["serve", "--port", "8080"]),
    ],
)
def test_every_program_refuses_a_bad_file_at_start_in_one_line(
    tmp_path: Path, program: str, args: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(FEED + FEED)  # the feed kind twice
    env = {
        **os.environ,
        "HERALD_NAMESPACES_FILE": str(bad),
        "HERALD_QA_DATA_DIR": str(tmp_path / "qa"),
        "HERALD_REDIS_URL": "redis://127.0.0.1:1/0",  # never reached
    }
    done = subprocess.run(
        [sys.executable, "-m", program, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.endswith(
        f"HERALD_NAMESPACES_FILE: {bad}: namespace 2 (feed): name: overlaps namespace 1:"
        " the kind 'feed' is declared twice (each kind has one namespace)"
    )
