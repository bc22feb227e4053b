"""Upload quotas per user (issue 11, item 14): qasite/api/routes/attachments.py.

Before, one account could upload without end (each upload up to max_attachment_bytes, each
decoded). Now: ``uploads_per_day`` uploads in any 24 hours (429 with Retry-After) and
``upload_quota_bytes`` of stored attachments (413). The Redis test shares the daily count
between two applications on one real redis-server, as two workers would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qasite.core.settings import Settings
from tests.qasite.support import QA, User, error_of, png_bytes, running_qa
from tests.support.redis_server import RedisServer


@pytest.fixture
async def qa(settings: Settings) -> AsyncIterator[QA]:
    async with running_qa(settings.replace(uploads_per_day=2)) as running:
        yield running


async def upload(qa: QA, user: User, question_id: int, data: bytes) -> int:
    r = await qa.client.post(
        f"/api/questions/{question_id}/attachments", content=data, headers=user.headers
    )
    return r.status_code


def refused(reason: str) -> str:
    return f'herald_qa_uploads_refused_total{{reason="{reason}"}} 1.0'


async def test_a_user_over_the_daily_uploads_is_429_with_retry_after(qa: QA) -> None:
    user, other = await qa.signup(), await qa.signup()
    q, mine = await qa.ask(user), await qa.ask(other)
    assert [await upload(qa, user, q["id"], png_bytes()) for _ in range(2)] == [201, 201]
    r = await qa.client.post(
        f"/api/questions/{q['id']}/attachments", content=png_bytes(), headers=user.headers
    )
    assert r.status_code == 429, r.text
    assert error_of(r)["reason"] == "too_many_attempts"
    assert "uploads a day" in error_of(r)["message"]
    assert 86000 < int(r.headers["retry-after"]) <= 86400
    assert await upload(qa, other, mine["id"], png_bytes()) == 201  # per user
    metrics = (await qa.client.get("/metrics")).text
    assert refused("daily_quota") in metrics


async def test_a_user_over_the_storage_quota_is_413(settings: Settings) -> None:
    image = png_bytes(20, 20)
    async with running_qa(settings.replace(upload_quota_bytes=2 * len(image) + 10)) as qa:
        user = await qa.signup()
        q = await qa.ask(user)
        assert [await upload(qa, user, q["id"], image) for _ in range(2)] == [201, 201]
        r = await qa.client.post(
            f"/api/questions/{q['id']}/attachments", content=image, headers=user.headers
        )
        assert r.status_code == 413, r.text
        assert "delete" in error_of(r)["message"]
        metrics = (await qa.client.get("/metrics")).text
        assert refused("storage_quota") in metrics
        # Deleting the post frees its attachments' bytes.
        assert (
            await qa.client.delete(f"/api/questions/{q['id']}", headers=user.headers)
        ).status_code == 204
        q2 = await qa.ask(user)
        assert await upload(qa, user, q2["id"], image) == 201


async def test_two_workers_on_one_redis_share_the_daily_count(
    tmp_path: Path, settings: Settings, redis_server: RedisServer
) -> None:
    shared = settings.replace(redis_url=redis_server.url, uploads_per_day=2)
    async with (
        running_qa(shared, migrate_on_start=False) as first,
        running_qa(shared, migrate_on_start=False) as second,
    ):
        user = await first.signup()
        q = await first.ask(user)
        codes = [await upload(qa, user, q["id"], png_bytes()) for qa in (first, second, first)]
        assert codes == [201, 201, 429]
        assert redis_server.client().keys("herald:qa:limit:upload:*")
