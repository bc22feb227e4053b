"""Access tokens revoked at logout (issue 11, item 14): qasite/core/revocation.py, the logout
route and the check of every authenticated request in qasite/api/deps.py.

Before, an access token kept working for its whole lifetime after a logout. The Redis test
runs two applications on one real redis-server, as two Q&A workers would.
"""

from __future__ import annotations

from pathlib import Path

from qasite.core.revocation import MemoryDenyList, RedisDenyList
from qasite.core.settings import Settings
from tests.qasite.support import QA, User, error_of, running_qa
from tests.support.redis_server import RedisServer


async def logout(qa: QA, user: User) -> None:
    r = await qa.client.post(
        "/api/auth/logout",
        json={"refresh_token": user.tokens["refresh_token"]},
        headers=user.headers,
    )
    assert r.status_code == 204, r.text


async def test_an_access_token_is_refused_once_its_owner_logged_out(qa: QA) -> None:
    user = await qa.signup()
    other_session = await qa.client.post(
        "/api/auth/login", json={"email": user.email, "password": "correct horse battery"}
    )
    other = {"Authorization": f"Bearer {other_session.json()['access_token']}"}
    assert (await qa.client.get("/api/auth/me", headers=user.headers)).status_code == 200
    await logout(qa, user)
    me = await qa.client.get("/api/auth/me", headers=user.headers)
    ask = await qa.client.post(
        "/api/questions",
        json={"title": "after logout", "body": "still me?", "tags": ["abuse"]},
        headers=user.headers,
    )
    for r in (me, ask):
        assert r.status_code == 401, r.text
        assert "revoked" in error_of(r)["message"]
    # Only the token logged out with: the same account's other session goes on.
    assert (await qa.client.get("/api/auth/me", headers=other)).status_code == 200
    metrics = (await qa.client.get("/metrics")).text
    assert 'herald_qa_access_tokens_refused_total{reason="revoked"} 2.0' in metrics


async def test_a_logout_without_an_access_token_still_revokes_the_refresh_token(qa: QA) -> None:
    user = await qa.signup()
    r = await qa.client.post(
        "/api/auth/logout", json={"refresh_token": user.tokens["refresh_token"]}
    )
    assert r.status_code == 204
    assert (await qa.client.get("/api/auth/me", headers=user.headers)).status_code == 200


async def test_the_memory_list_forgets_a_token_when_it_expires() -> None:
    revoked = MemoryDenyList(max_entries=3)
    await revoked.revoke("a", expires_at=100.0, now=10.0)
    assert await revoked.is_revoked("a", now=99.0)
    assert not await revoked.is_revoked("a", now=100.0)
    assert len(revoked) == 0
    await revoked.revoke("gone", expires_at=5.0, now=10.0)  # already expired: nothing kept
    for i in range(5):
        await revoked.revoke(f"t{i}", expires_at=200.0 + i, now=10.0)
    assert len(revoked) == 3
    assert await revoked.is_revoked("t4", now=10.0)  # the soonest to expire went first


async def test_two_workers_on_one_redis_share_the_deny_list(
    tmp_path: Path, settings: Settings, redis_server: RedisServer
) -> None:
    shared = settings.replace(redis_url=redis_server.url)
    async with (
        running_qa(shared, migrate_on_start=False) as first,
        running_qa(shared, migrate_on_start=False) as second,
    ):
        assert isinstance(first.app.state.revoked, RedisDenyList)
        user = await first.signup()
        assert (await second.client.get("/api/auth/me", headers=user.headers)).status_code == 200
        await logout(first, user)
        r = await second.client.get("/api/auth/me", headers=user.headers)
        assert r.status_code == 401, r.text
        keys = redis_server.client().keys("herald:qa:revoked:*")
        assert len(keys) == 1
        ttl_ms = redis_server.client().pttl(keys[0])
        assert 0 < ttl_ms <= shared.access_token_ttl_s * 1000  # the token's remaining lifetime
