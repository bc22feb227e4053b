"""Fixtures of the socketsrv tests that run a real worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from socketsrv.connection import ClientConnection
from socketsrv.worker import Worker
from tests.support.redis_server import RedisServer
from tests.support.tokens import TokenIssuer
from tests.support.worker import running_worker


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    """One worker on the memory bus with the FAST settings of tests/support/worker.py."""
    async with running_worker() as w:
        yield w


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(params=["memory", "redis"])
async def worker_with_tokens(
    request: pytest.FixtureRequest, issuer: TokenIssuer
) -> AsyncIterator[Worker]:
    """A worker that checks :func:`issuer`'s tokens, on the memory bus and on a real Redis."""
    overrides: dict[str, Any] = {"jwt_public_key_pem": issuer.public_pem}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        overrides["redis_url"] = server.url
    async with running_worker(**overrides) as w:
        yield w


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every chunk the worker's connections hand to their transports, in order."""
    chunks: list[bytes] = []
    original = ClientConnection._write

    def recording(self: ClientConnection, transport: Any, data: bytes) -> None:
        chunks.append(data)
        original(self, transport, data)

    monkeypatch.setattr(ClientConnection, "_write", recording)
    return chunks
