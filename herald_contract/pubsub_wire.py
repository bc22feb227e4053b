"""Pieces both raw pub/sub connections share (:mod:`herald_contract.redis_pubsub` for
SUBSCRIBE, :mod:`herald_contract.cluster_pubsub` for SSUBSCRIBE): one reply parsed into a
kind, a channel and a payload whichever command made it, the per-channel queues of
(un)subscribe replies still due, and batching.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from herald_contract.errors import BusUnavailable
from herald_contract.keys import KeyLayout

Waiter = asyncio.Future[None]
DueReplies = dict[str, deque[Waiter | None]]
"""Per channel, the (un)subscribe replies still due, in the order the commands were sent
(Redis answers in order); a waiter for a subscribe, None for an unsubscribe."""


def reply_parts(reply: object, keys: KeyLayout) -> tuple[str, str, object] | None:
    """(kind, Herald channel, payload) of a pub/sub reply; None for a pong or a channel not
    of *keys*. The kind is the reply's first element ("message", "ssubscribe", ...)."""
    if not isinstance(reply, list) or len(reply) < 3:
        return None
    kind, name, payload = reply[0], reply[1], reply[2]
    if not isinstance(kind, bytes) or not isinstance(name, bytes):
        return None
    channel = keys.channel_of_live(name.decode("utf-8", "replace"))
    if channel is None:
        return None
    return kind.decode("ascii", "replace"), channel, payload


class ReplyKind(enum.Enum):
    MESSAGE = "message"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


_KINDS = {
    **{kind.value: kind for kind in ReplyKind},
    # Sharded pub/sub (SSUBSCRIBE) answers with the same three kinds, prefixed with "s".
    **{"s" + kind.value: kind for kind in ReplyKind},
}


@dataclass(frozen=True, slots=True)
class PubSubReply:
    """One pub/sub reply about a Herald channel (plain or sharded)."""

    kind: ReplyKind
    channel: str
    payload: object
    """The envelope bytes of a MESSAGE; the subscription count otherwise."""


def parse_reply(reply: object, keys: KeyLayout) -> PubSubReply | None:
    """The reply as a :class:`PubSubReply`; None for a pong, another kind of reply, or a
    channel not of *keys*."""
    parts = reply_parts(reply, keys)
    if parts is None:
        return None
    kind, channel, payload = parts
    known = _KINDS.get(kind)
    return PubSubReply(known, channel, payload) if known is not None else None


def expect_subscribe(replies: DueReplies, channel: str) -> Waiter:
    """Queue a waiter for the subscribe reply due on *channel*; it ends when that arrives."""
    waiter: Waiter = asyncio.get_running_loop().create_future()
    waiter.add_done_callback(_retrieve)
    replies.setdefault(channel, deque()).append(waiter)
    return waiter


def fail_waiters(replies: DueReplies, why: str) -> None:
    """Fail every waiter still due with :class:`BusUnavailable` (*why*) and forget them all."""
    for due in replies.values():
        for waiter in due:
            if waiter is not None and not waiter.done():
                waiter.set_exception(BusUnavailable(why))
    replies.clear()


def batches(items: list[str], size: int) -> Iterable[list[str]]:
    """*items* in lists of at most *size*, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _retrieve(waiter: Waiter) -> None:
    # A waiter whose subscribe() was cancelled may fail with nobody awaiting it; fetching
    # the exception here keeps asyncio from logging "exception was never retrieved".
    if not waiter.cancelled():
        waiter.exception()
