"""The transactional outbox: events written in the transaction of the change they describe.

:func:`emit` adds an ``outbox`` row to the caller's session; the row commits or rolls back
with the change, so an event is never published for a change that did not happen and never
lost for one that did. :mod:`qasite.domain.relay` publishes committed rows in ``id`` order.

The channel and the payload are checked here, inside the transaction (the channel grammar
and the largest data of the installation's namespace file, which a write session carries in
its ``info``; JSON-compatible), so a row the bus would refuse is never committed and can
never block the relay. :mod:`qasite.domain.events` builds payloads that fit
(a post too big to travel goes out without its body), so this check never fails a user's write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from herald_contract.channels import parse_channel
from herald_contract.envelope import pack_data
from qasite.core.db import NAMESPACES_INFO
from qasite.domain.models import OutboxEvent


def emit(session: AsyncSession, channel: str, payload: dict[str, Any]) -> OutboxEvent:
    """Queue *payload* for *channel* in *session*'s transaction; raise if the bus would refuse it.

    Raises :class:`herald_contract.errors.InvalidChannel` or
    :class:`herald_contract.errors.InvalidPayload`.
    """
    namespaces = session.info.get(NAMESPACES_INFO)  # None: the shipped file's
    namespace = parse_channel(channel, namespaces).namespace
    pack_data(payload, max_bytes=namespace.max_data_bytes)
    event = OutboxEvent(channel=channel, payload=payload)
    session.add(event)
    return event
