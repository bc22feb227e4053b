"""qasite/domain/outbox.py: emit() checks a channel and its data by the installation's
namespace file, which a write session carries (qasite/core/db.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from herald_contract.errors import InvalidChannel, InvalidPayload
from herald_contract.namespaces_file import namespaces_from_toml
from qasite.core.db import NAMESPACES_INFO
from qasite.domain.outbox import emit

SMALL_QUESTIONS = """
[[namespace]]
name = "question"
subscribe = "anyone"
key = { type = "id" }
max_data_bytes = 50
"""


def test_emit_follows_the_namespaces_of_its_session() -> None:
    session = AsyncSession(info={NAMESPACES_INFO: namespaces_from_toml(SMALL_QUESTIONS)})
    assert emit(session, "question:1", {"type": "score"}).channel == "question:1"
    with pytest.raises(InvalidChannel, match="unknown kind; expected question"):
        emit(session, "tag:python", {"type": "question"})
    with pytest.raises(InvalidPayload, match="more than 50"):
        emit(session, "question:1", {"body": "x" * 60})


def test_a_session_without_namespaces_uses_the_shipped_file() -> None:
    session = AsyncSession()
    assert emit(session, "tag:python", {"type": "question"}).channel == "tag:python"
    with pytest.raises(InvalidPayload, match="more than 65536"):
        emit(session, "question:1", {"body": "x" * 70_000})
