"""Connection tokens for the socket fleet (docs/protocol.md#tokens)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from qasite.api.deps import OptionalUserId, SettingsDep
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.schemas import SocketTokenOut
from qasite.core.tokens import issue_socket_token

router = APIRouter(prefix="/api", tags=["realtime"], responses=ERROR_RESPONSES)


@router.post("/socket-token", response_model=SocketTokenOut)
async def socket_token(user_id: OptionalUserId, settings: SettingsDep) -> SocketTokenOut:
    """A short-lived JWT for the ``connect`` command, signed with the service's private key.

    Anonymous visitors get ``token: null``: they connect without a token and may read public
    channels only (the fleet allows anonymous connections by default).
    """
    if user_id is None:
        return SocketTokenOut(token=None, expires_at=None, user_id=None)
    issued = issue_socket_token(settings, user_id, time.time())
    return SocketTokenOut(token=issued.token, expires_at=issued.expires_at, user_id=user_id)
