"""A publication as the worker handles it: decoded once, framed once per wire format."""

from __future__ import annotations

from typing import Any

from herald_contract.channels import ConflationKey, conflation_key
from herald_contract.envelope import decode_envelope
from herald_contract.namespaces import Namespaces
from socketsrv.protocol import frames
from socketsrv.protocol.commands import WireFormat


class Publication:
    """One decoded publication; its frames are built on first use, once per wire format."""

    __slots__ = (
        "_frames",
        "_key",
        "_key_known",
        "_namespaces",
        "channel",
        "data",
        "epoch",
        "offset",
        "published_ms",
        "size",
    )

    def __init__(
        self,
        channel: str,
        epoch: str,
        offset: int,
        published_ms: int,
        data: Any,
        namespaces: Namespaces | None = None,
        size: int = 0,
    ):
        """*namespaces*: whose conflation rules apply (None: the shipped file's); *size*: the
        bytes of its envelope (what keeping it costs, socketsrv/tail.py)."""
        self.channel = channel
        self._namespaces = namespaces
        self.epoch = epoch
        self.offset = offset
        self.published_ms = published_ms
        self.data = data
        self.size = size
        self._frames: dict[WireFormat, bytes] = {}
        self._key: ConflationKey | None = None
        self._key_known = False

    @property
    def conflation_key(self) -> ConflationKey | None:
        """The key under which a newer publication of the channel supersedes this one for a
        slow connection (the kind's ``conflation`` in the namespace file); None: never
        conflated. Computed on first use: only a connection past its conflation mark asks."""
        if not self._key_known:
            self._key = conflation_key(self.channel, self.data, self._namespaces)
            self._key_known = True
        return self._key

    def frame(self, wire: WireFormat) -> bytes:
        built = self._frames.get(wire)
        if built is None:
            # Offset 1 names its epoch: a client told "-" (nothing published) learns the
            # epoch its position is in from it (docs/protocol.md#recovery).
            epoch = self.epoch if self.offset == 1 else None
            built = frames.publication(self.channel, self.offset, self.data, wire, epoch)
            self._frames[wire] = built
        return built

    def conflated_frame(self, wire: WireFormat, conflated: int) -> bytes:
        """This publication's frame for one connection that did not get the offsets from
        *conflated* up to this one, superseded (docs/protocol.md#conflation)."""
        epoch = self.epoch if self.offset == 1 else None
        return frames.publication(self.channel, self.offset, self.data, wire, epoch, conflated)


def decode_publication(
    channel: str, envelope: bytes, namespaces: Namespaces | None = None
) -> Publication:
    """Decode envelope bytes from the bus; raises herald_contract.envelope.InvalidEnvelope."""
    e = decode_envelope(envelope)
    return Publication(
        channel, e.epoch, e.offset, e.published_ms, e.data, namespaces, size=len(envelope)
    )
