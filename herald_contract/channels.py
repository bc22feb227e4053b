"""The channel grammar of a Q&A site (docs/protocol.md#channels).

Every channel name that reaches Redis or the subscription table passes :func:`parse_channel`
first, so a hostile client cannot make Herald allocate keys of arbitrary size or shape.

    question:<id>     public   scores, answers, comments, edits, accepted answer of one question
    questions:new     public   new questions ("N new questions" banners)
    tag:<name>        public   new questions with that tag
    user:<id>         private  inbox items, unread count, reputation of that user only
    probe:<name>      public   reserved: the end-to-end prober's probes (launch/prober.py)

``<id>`` is a decimal integer from 1 to 2**63-1 without leading zeros; ``<name>`` is 1-35
characters of ``a-z 0-9 + # . -`` (Stack Overflow's tag alphabet), starting with a letter, a
digit or a dot (``.net``); a probe ``<name>`` is 1-32 characters of ``a-z 0-9 -``, starting
with a letter or a digit. A whole name is at most :data:`MAX_CHANNEL_LENGTH` bytes of ASCII.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from herald_contract.errors import InvalidChannel

MAX_CHANNEL_LENGTH = 64
MAX_ID = 2**63 - 1
MAX_TAG_LENGTH = 35
MAX_PROBE_NAME_LENGTH = 32

_ID = re.compile(r"[1-9][0-9]{0,18}")
_TAG = re.compile(r"[a-z0-9.][a-z0-9+#.\-]{0,34}")
_PROBE_NAME = re.compile(r"[a-z0-9][a-z0-9\-]{0,31}")


class ChannelKind(enum.Enum):
    QUESTION = "question"
    NEW_QUESTIONS = "questions"
    TAG = "tag"
    USER = "user"
    PROBE = "probe"
    """Reserved for the end-to-end prober: it alone publishes there (tiny payloads, one every
    few seconds), and reading one is as harmless as reading any public channel."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A valid channel name, parsed."""

    name: str
    kind: ChannelKind
    key: str
    """The part after the colon: the question or user id, the tag, or ``"new"``."""

    @property
    def is_private(self) -> bool:
        """Only ``user:<id>`` channels are private."""
        return self.kind is ChannelKind.USER

    def readable_by(self, user_id: str | None) -> bool:
        """Whether a connection authenticated as *user_id* (None: anonymous) may subscribe."""
        if self.kind is ChannelKind.USER:
            return user_id is not None and user_id == self.key
        return True

    def __str__(self) -> str:
        return self.name


def _parse_id(name: str, value: str) -> str:
    if _ID.fullmatch(value) is None or int(value) > MAX_ID:
        raise InvalidChannel(name, "the id must be a decimal integer from 1 to 2**63-1")
    return value


def parse_channel(name: object) -> Channel:
    """Parse and validate a channel name; raise :class:`InvalidChannel` if it breaks the grammar."""
    if not isinstance(name, str):
        raise InvalidChannel(repr(name)[:80], "a channel name is a string")
    if not name:
        raise InvalidChannel(name, "empty")
    if len(name) > MAX_CHANNEL_LENGTH:
        raise InvalidChannel(name, f"longer than {MAX_CHANNEL_LENGTH} characters")
    if not name.isascii():
        raise InvalidChannel(name, "only ASCII characters are allowed")
    prefix, sep, rest = name.partition(":")
    if not sep:
        raise InvalidChannel(name, "expected <kind>:<key>")
    if prefix == "question":
        return Channel(name, ChannelKind.QUESTION, _parse_id(name, rest))
    if prefix == "user":
        return Channel(name, ChannelKind.USER, _parse_id(name, rest))
    if prefix == "questions":
        if rest != "new":
            raise InvalidChannel(name, "the only questions channel is questions:new")
        return Channel(name, ChannelKind.NEW_QUESTIONS, rest)
    if prefix == "tag":
        if _TAG.fullmatch(rest) is None:
            raise InvalidChannel(
                name, f"a tag is 1-{MAX_TAG_LENGTH} characters of a-z 0-9 + # . - (lowercase)"
            )
        return Channel(name, ChannelKind.TAG, rest)
    if prefix == "probe":
        if _PROBE_NAME.fullmatch(rest) is None:
            raise InvalidChannel(
                name,
                f"a probe name is 1-{MAX_PROBE_NAME_LENGTH} characters of a-z 0-9 - (lowercase),"
                " starting with a letter or a digit",
            )
        return Channel(name, ChannelKind.PROBE, rest)
    raise InvalidChannel(name, "unknown kind; expected question, questions, tag, user or probe")


# Conflation (docs/protocol.md#conflation): a channel kind may name, for a publication's data,
# the key under which a newer publication supersedes an older one queued for a slow
# connection. Declared here, beside the channel kinds, and nowhere else.

ConflationKey = tuple[str, ...]
"""What makes two publications of one channel interchangeable but for their age."""


def _score_key(data: object) -> ConflationKey | None:
    """A ``question:<id>`` score event (qasite/domain/events.py: ``{"type": "score", "post":
    "answer:7", "score": n, "version": v}``) carries the absolute score of one post: the
    newest one of a post is all a client needs."""
    if isinstance(data, dict) and data.get("type") == "score":
        post = data.get("post")
        if isinstance(post, str):
            return ("score", post)
    return None


CONFLATION_KEYS: dict[ChannelKind, Callable[[object], ConflationKey | None]] = {
    ChannelKind.QUESTION: _score_key,
}
"""The kinds whose publications may be conflated, with the function that keys their data
(None: this publication is never conflated)."""

_KIND_OF_PREFIX = {kind.value: kind for kind in ChannelKind}


def conflation_key(channel: str, data: object) -> ConflationKey | None:
    """The conflation key of a publication of *channel* (a valid name) carrying *data*;
    None when it must never be conflated."""
    kind = _KIND_OF_PREFIX.get(channel.partition(":")[0])
    keyer = None if kind is None else CONFLATION_KEYS.get(kind)
    return None if keyer is None else keyer(data)
