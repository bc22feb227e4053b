"""Frames a congested connection holds back, where a newer publication supersedes an older one.

Per-key conflation (issue 12, item 2; docs/protocol.md#conflation). While a connection's
transport holds more than ``conflate_mark_bytes`` the client has not read, the connection
stops handing frames to the transport and queues them here instead; it takes them from the
head as the client drains (socketsrv/connection.py). A publication whose channel kind declares
a conflation key (herald_contract/channels.py: a post's score on ``question:<id>``) supersedes
the queued, not yet written publication of the same channel and key: the older one is dropped
and the newer one is appended, so the offsets of a channel still reach the client in
increasing order and an older value never follows a newer one. Everything else (keyless
publications, replies, heartbeats, replays) is never dropped; a heartbeat is held ahead of the
rest (:meth:`HeldFrames.add_first`).

The client must not mistake a dropped offset for a gap: the first publication of the same
channel written after a dropped one carries ``"conflated": n``, the lowest offset dropped since
the channel's previous frame on this connection. That frame is built for this connection when
it is written (:meth:`Publication.conflated_frame`); the shared frame stays untouched.

No I/O here: the connection gives frames in and writes what :meth:`HeldFrames.take` returns.
A dropped entry stays in the queue, emptied, until the head reaches it (its offset is then
remembered for the channel's next frame); when the dropped entries outnumber the live ones
the queue is compacted, so the entries are bounded by the live bytes the connection bounds.
"""

from __future__ import annotations

from collections import deque

from herald_contract.channels import ConflationKey
from socketsrv.protocol.commands import WireFormat
from socketsrv.publication import Publication

COMPACT_MIN_DEAD = 64
"""Dropped entries tolerated before a compaction is considered."""


class _Held:
    __slots__ = ("alive", "conflated", "frame", "pub")

    def __init__(self, frame: bytes, pub: Publication | None) -> None:
        self.frame = frame
        self.pub = pub
        self.alive = True
        self.conflated: int | None = None
        """The lowest offset dropped before this one on its channel (found by a compaction)."""


class HeldFrames:
    """The frames one congested connection holds back (see the module docstring)."""

    __slots__ = ("_by_key", "_dead", "_lows", "_queue", "_wire", "nbytes")

    def __init__(self, wire: WireFormat) -> None:
        self._wire = wire
        self._queue: deque[_Held] = deque()
        self._by_key: dict[tuple[str, ConflationKey], _Held] = {}
        self._lows: dict[str, int] = {}
        """Per channel, the lowest offset dropped at the head whose successor is not written."""
        self._dead = 0
        self.nbytes = 0
        """The bytes of the frames held (dropped ones count nothing)."""

    def __len__(self) -> int:
        """The frames held, dropped ones not counted."""
        return len(self._queue) - self._dead

    def add(self, frame: bytes, pub: Publication | None) -> bool:
        """Hold *frame* (*pub*: the live publication it is the frame of, None for anything
        else); True when it superseded a held publication with the same key."""
        entry = _Held(frame, pub)
        superseded = False
        key = None if pub is None else pub.conflation_key
        if key is not None:
            assert pub is not None
            slot = (pub.channel, key)
            old = self._by_key.get(slot)
            if old is not None:
                old.alive = False
                self.nbytes -= len(old.frame)
                old.frame = b""
                self._dead += 1
                superseded = True
            self._by_key[slot] = entry
        self._queue.append(entry)
        self.nbytes += len(frame)
        if self._dead > COMPACT_MIN_DEAD and 2 * self._dead > len(self._queue):
            self._compact()
        return superseded

    def add_first(self, frame: bytes) -> None:
        """Hold *frame* ahead of everything held, never to be dropped: a heartbeat, which
        must not wait behind a backlog it has nothing to do with (its answer is what tells a
        reading client from a dead one; docs/protocol.md#heartbeats)."""
        self._queue.appendleft(_Held(frame, None))
        self.nbytes += len(frame)

    def take(self, budget_bytes: int) -> list[bytes]:
        """Frames from the head, oldest first, up to *budget_bytes* (at least one while any
        is held), each built for writing (with ``conflated`` where an offset was dropped)."""
        out: list[bytes] = []
        used = 0
        queue, lows = self._queue, self._lows
        while queue:
            entry = queue[0]
            pub = entry.pub
            if not entry.alive:
                queue.popleft()
                self._dead -= 1
                _fold(lows, entry)
                continue
            if out and used + len(entry.frame) > budget_bytes:
                break
            queue.popleft()
            frame = entry.frame
            self.nbytes -= len(frame)
            if pub is not None:
                key = pub.conflation_key
                if key is not None and self._by_key.get((pub.channel, key)) is entry:
                    del self._by_key[(pub.channel, key)]
                low = lows.pop(pub.channel, None)
                if entry.conflated is not None:
                    low = entry.conflated if low is None else min(low, entry.conflated)
                if low is not None:
                    frame = pub.conflated_frame(self._wire, low)
            out.append(frame)
            used += len(frame)
        return out

    def _compact(self) -> None:
        """Drop the emptied entries, handing each one's offset to the next held publication
        of its channel (there is one: the publication that superseded it, or a later one)."""
        lows: dict[str, int] = {}
        kept: deque[_Held] = deque()
        for entry in self._queue:
            pub = entry.pub
            if not entry.alive:
                _fold(lows, entry)
                continue
            if pub is not None and (low := lows.pop(pub.channel, None)) is not None:
                entry.conflated = low if entry.conflated is None else min(low, entry.conflated)
            kept.append(entry)
        self._queue = kept
        self._dead = 0


def _fold(lows: dict[str, int], dropped: _Held) -> None:
    """Remember the lowest offset *dropped* stands for (its own, or one it carried from an
    earlier drop) for the next held publication of its channel."""
    pub = dropped.pub
    assert pub is not None  # only keyed publications are dropped
    low = pub.offset if dropped.conflated is None else dropped.conflated
    channel = pub.channel
    lows[channel] = min(low, lows.get(channel, low))
