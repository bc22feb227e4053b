"""Connection tokens (qasite/api/routes/socket_token.py), checked with socketsrv's verifier."""

from __future__ import annotations

import math
import time

from socketsrv.protocol.auth import TokenVerifier
from tests.qasite.support import QA


async def test_a_logged_in_user_gets_a_token_the_fleet_accepts_with_the_public_key(qa: QA) -> None:
    user = await qa.signup()
    before = time.time()
    r = await qa.client.post("/api/socket-token", headers=user.headers)
    after = time.time()
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == user.id
    public_key = qa.context.settings.socket_public_key_pem
    assert public_key is not None
    identity = TokenVerifier(public_key).verify(body["token"], time.time())
    assert identity.user_id == str(user.id)
    assert identity.expires_at == body["expires_at"]
    ttl_s = qa.context.settings.socket_token_ttl_s
    # Issued between before and after (whole seconds in the token), however slow the request.
    assert math.floor(before + ttl_s) <= body["expires_at"] <= after + ttl_s


async def test_an_anonymous_visitor_gets_no_token(qa: QA) -> None:
    r = await qa.client.post("/api/socket-token")
    assert r.json() == {"token": None, "expires_at": None, "user_id": None}


async def test_a_bad_access_token_is_401_not_anonymous(qa: QA) -> None:
    r = await qa.client.post("/api/socket-token", headers={"Authorization": "Bearer x.y.z"})
    assert r.status_code == 401
