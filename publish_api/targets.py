"""Where the publish API's publications go: a :class:`PublishTarget`.

* over Redis, :class:`publisher.Publisher` itself (the publish script, its retry of a lost
  connection with an event id, its retention per channel kind);
* inside ``./herald run`` on embedded defaults, :class:`BusTarget` around the in-process bus
  the socket worker reads, with the same checks (:func:`publisher.publish.check_publication`).

Either way a publication is checked by the publishing library's rules before anything is sent
and gets its offset, history entry and idempotency record from the bus's one publish step.
"""

from __future__ import annotations

from typing import Any, Protocol

from herald_contract.errors import BusUnavailable, PublishFailed
from herald_contract.namespaces import Namespaces
from herald_contract.stream import PublishResult
from publisher.publish import check_publication


class PublishTarget(Protocol):
    def check(self, channel: str, data: Any, *, event_id: str = "") -> bytes:
        """*data* packed for *channel*; raises InvalidChannel or InvalidPayload."""

    async def publish_packed(
        self, channel: str, packed: bytes, *, event_id: str = ""
    ) -> PublishResult:
        """Publish what :meth:`check` returned; raises PublishFailed."""


class PackedBus(Protocol):
    async def publish(
        self, channel: str, packed_data: bytes, *, event_id: str = ""
    ) -> PublishResult: ...


class BusTarget:
    """A :class:`PublishTarget` on a bus object (the in-process bus of embedded mode)."""

    def __init__(self, bus: PackedBus, namespaces: Namespaces) -> None:
        self._bus = bus
        self._namespaces = namespaces

    def check(self, channel: str, data: Any, *, event_id: str = "") -> bytes:
        return check_publication(self._namespaces, channel, data, event_id=event_id)

    async def publish_packed(
        self, channel: str, packed: bytes, *, event_id: str = ""
    ) -> PublishResult:
        try:
            return await self._bus.publish(channel, packed, event_id=event_id)
        except BusUnavailable as exc:
            raise PublishFailed(channel, exc.why) from exc
