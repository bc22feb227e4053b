"""A channel's recent publications: subscribes to a live channel answered without a history read.

A worker subscribed to a channel knows where its stream is: every publication reaches the
hub live and in order, and a gap is repaired from history before anything after it is handed
on (socketsrv/recovery.py). So while the channel is LIVE on a live bus, the worker can answer
a subscribe itself: the position is the channel's epoch and last offset, and what a
reconnecting client missed is the end of the stream it has just passed on, if it is still
held here. The subscriber is registered as catching up before the answer is taken, so every
later publication reaches it live: the guarantee a history read issued after registering
gives (socketsrv/history.py), without the read. In a reconnect storm most subscribes are to
channels the worker already holds; each used to cost a Redis round trip and its parsing.

What is held is bounded per channel (:data:`TAIL_PUBLICATIONS`, :data:`TAIL_CHANNEL_BYTES`),
and nothing is held longer than :data:`TAIL_WINDOW_S` (:meth:`Tails.prune`, from the
worker's sweep), so a worker holds at most what it received in that window: a reconnect
after a blip misses a handful of small publications, seconds old. The answer is never more than
the history would give: a replay that the channel's history size or TTL would no longer
cover is read from the bus, and so is everything else this cannot vouch for (another epoch,
a position ahead of the worker's, a channel with nothing published, a gap older than what
is held).
"""

from __future__ import annotations

from collections.abc import Callable

from herald_contract.envelope import StreamPosition
from herald_contract.history import NO_EPOCH, reading_from
from socketsrv.channel import Channel
from socketsrv.history import Recovered
from socketsrv.publication import Publication

TAIL_PUBLICATIONS = 16
"""Most publications one channel keeps."""

TAIL_CHANNEL_BYTES = 16 * 1024
"""Most envelope bytes one channel keeps (a bigger publication is not kept); the decoded
data and the frames built from them take about twice as much again."""

TAIL_WINDOW_S = 10.0
"""How long a publication is kept: reconnects come within seconds of a blip. What all
channels keep is thus also bounded by what the worker received in this window."""

Retention = Callable[[str], tuple[int, float]]
"""A channel's history size and TTL in seconds (``HistorySettings.retention``)."""


class Tails:
    """How the channels of one hub keep their recent publications, and answer from them."""

    def __init__(self, retention: Retention, *, window_s: float = TAIL_WINDOW_S) -> None:
        self._retention = retention
        self._window_ms = int(window_s * 1000)

    def remember(self, ch: Channel, pub: Publication) -> None:
        """Keep *pub*, just handed on as the channel's next offset, at the end of its tail."""
        tail = ch.tail
        if pub.size > TAIL_CHANNEL_BYTES:
            _keep(ch, None)  # too big to keep: the tail would not reach the new last offset
        elif not tail or tail[-1].offset != pub.offset - 1 or tail[-1].epoch != pub.epoch:
            _keep(ch, [pub])  # the first, or not contiguous: the stream started afresh
        else:
            tail.append(pub)
            ch.tail_bytes += pub.size
            while len(tail) > TAIL_PUBLICATIONS or ch.tail_bytes > TAIL_CHANNEL_BYTES:
                ch.tail_bytes -= tail.pop(0).size

    def seed(self, ch: Channel, result: Recovered) -> None:
        """Start a channel's tail from the history read that gave it its position, when what
        was read reaches that position without a gap and nothing came live since."""
        pubs = result.publications
        if ch.tail or not result.complete or not pubs:
            return
        if pubs[-1].offset != ch.last or pubs[-1].epoch != ch.epoch:
            return
        kept: list[Publication] = []
        size = 0
        for pub in reversed(pubs[-TAIL_PUBLICATIONS:]):
            if size + pub.size > TAIL_CHANNEL_BYTES:
                break
            kept.append(pub)
            size += pub.size
        kept.reverse()
        _keep(ch, kept or None)

    def prune(self, ch: Channel, now_ms: int) -> None:
        """Drop what was published more than the window ago (*now_ms*: the wall clock)."""
        tail = ch.tail
        cutoff = now_ms - self._window_ms
        if tail and tail[0].published_ms < cutoff:
            _keep(ch, [p for p in tail if p.published_ms >= cutoff] or None)

    def answer(self, ch: Channel, since: StreamPosition | None, now_ms: int) -> Recovered | None:
        """The history read of a subscribe from *since*, answered from what the worker holds,
        or None when only the bus can answer. The caller checks that the channel is LIVE on
        a live bus and has registered the subscriber."""
        epoch = ch.epoch
        if epoch is None or epoch == NO_EPOCH:
            return None
        position = StreamPosition(epoch, ch.last)
        if since is None:
            return Recovered(position, True, [])
        since = reading_from(since, position)
        if since.epoch != epoch or since.offset > position.offset:
            return None
        missed = position.offset - since.offset
        if missed == 0:
            return Recovered(position, True, [])
        tail = ch.tail
        if not tail or len(tail) < missed or tail[-1].offset != ch.last or tail[-1].epoch != epoch:
            return None
        size, ttl_s = self._retention(ch.name)
        pubs = tail[-missed:]
        if missed > size or pubs[0].published_ms < now_ms - ttl_s * 1000:
            return None  # the history would not cover it either
        return Recovered(position, True, pubs)


def _keep(ch: Channel, tail: list[Publication] | None) -> None:
    ch.tail = tail
    ch.tail_bytes = sum(p.size for p in tail) if tail else 0
