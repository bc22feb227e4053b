"""A publication as the worker handles it: decoded once, framed once per wire format."""

from __future__ import annotations

from typing import Any

from herald_contract.envelope import decode_envelope
from socketsrv.protocol import frames
from socketsrv.protocol.commands import WireFormat


class Publication:
    """One decoded publication; its frames are built on first use, once per wire format."""

    __slots__ = ("_frames", "channel", "data", "epoch", "offset", "published_ms")

    def __init__(self, channel: str, epoch: str, offset: int, published_ms: int, data: Any):
        self.channel = channel
        self.epoch = epoch
        self.offset = offset
        self.published_ms = published_ms
        self.data = data
        self._frames: dict[WireFormat, bytes] = {}

    def frame(self, wire: WireFormat) -> bytes:
        built = self._frames.get(wire)
        if built is None:
            # Offset 1 names its epoch: a client told "-" (nothing published) learns the
            # epoch its position is in from it (docs/protocol.md#recovery).
            epoch = self.epoch if self.offset == 1 else None
            built = frames.publication(self.channel, self.offset, self.data, wire, epoch)
            self._frames[wire] = built
        return built


def decode_publication(channel: str, envelope: bytes) -> Publication:
    """Decode envelope bytes from the bus; raises herald_contract.envelope.InvalidEnvelope."""
    e = decode_envelope(envelope)
    return Publication(channel, e.epoch, e.offset, e.published_ms, e.data)
