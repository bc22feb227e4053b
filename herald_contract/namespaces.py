"""Channel namespaces: the kinds of channel an installation has, and each kind's rules.

A channel name is ``<kind>:<key>``. Each kind is one :class:`Namespace`: the grammar of its
keys (:class:`KeyGrammar`), who may subscribe (:class:`Access`), its history retention, the
largest publication it takes and how its publications conflate. :class:`Namespaces` holds
them all and parses names (:meth:`Namespaces.parse`). It is built once at start-up from the
namespace file (:mod:`herald_contract.namespaces_file` reads and checks it; the shipped
default, ``herald_contract/namespaces.toml``, holds the Q&A site's kinds: docs/namespaces.md)
and handed to whoever needs it; this module does no I/O.

Whatever a file says, a key can never hold ``{`` or ``}`` (every Redis key of a channel carries
the name as a hash tag, herald_contract/keys.py) nor ``*`` (the wildcard of a token's
``channels`` claim), and a whole name is at most :data:`MAX_CHANNEL_LENGTH` ASCII characters.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from herald_contract.errors import InvalidChannel
from herald_contract.history import Retention

__all__ = [
    "FORBIDDEN_KEY_CHARACTERS",
    "MAX_CHANNEL_LENGTH",
    "MAX_ID",
    "Access",
    "Channel",
    "ChannelKind",
    "ConflationKey",
    "ConflationRule",
    "KeyGrammar",
    "KeyType",
    "Namespace",
    "Namespaces",
    "char_parts",
    "char_set",
    "grants_channel",
]

MAX_CHANNEL_LENGTH = 64
MAX_ID = 2**63 - 1
FORBIDDEN_KEY_CHARACTERS = frozenset("{}*")
"""Never in a key: braces end a Redis Cluster hash tag early; ``*`` is the grant wildcard."""

_ID = re.compile(r"[1-9][0-9]{0,18}")

ConflationKey = tuple[str, ...]
"""What makes two publications of one channel interchangeable but for their age."""


class ChannelKind(enum.StrEnum):
    """The kinds of the shipped default file, for code that must name one (the Q&A core, the
    prober). A parsed :class:`Channel` of one of these kinds carries the member itself as its
    ``kind`` (it equals the plain string); a kind added by a file is a plain string."""

    QUESTION = "question"
    NEW_QUESTIONS = "questions"
    TAG = "tag"
    USER = "user"
    PROBE = "probe"
    """Reserved for the end-to-end prober: it alone publishes there (tiny payloads, one every
    few seconds), and reading one is as harmless as reading any public channel."""


class KeyType(enum.StrEnum):
    """How a kind's keys are written (``key.type`` in the file)."""

    ID = "id"
    """A decimal integer from 1 to 2**63-1 without leading zeros."""
    NAME = "name"
    """``min_length`` to ``max_length`` characters of ``chars``, the first one of
    ``first_chars``."""
    FIXED = "fixed"
    """One of a fixed list of keys (``values``)."""


class Access(enum.StrEnum):
    """Who may subscribe to a kind's channels (``subscribe`` in the file)."""

    ANYONE = "anyone"
    """Every connection, anonymous ones included."""
    USER = "user"
    """Only a connection whose token's ``sub`` is the channel's key (an id kind)."""
    TOKEN = "token"  # noqa: S105 (a mode, not a secret)
    """Only a connection whose token's ``channels`` claim grants the channel
    (:func:`grants_channel`)."""


@dataclass(frozen=True, slots=True)
class KeyGrammar:
    """The keys of one kind. *chars* and *first_chars* are character-set specs as written in
    the file (``a-z0-9+#.-``: ranges between two lowercase letters, two uppercase letters or
    two digits, any other character as itself); *first_chars* empty means *chars*."""

    type: KeyType
    min_length: int = 1
    max_length: int = 19
    chars: str = ""
    first_chars: str = ""
    values: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type is KeyType.NAME:
            chars, first = char_set(self.chars), char_set(self.first_chars or self.chars)
            rest = f"[{_class(chars)}]{{{self.min_length - 1},{self.max_length - 1}}}"
            pattern = re.compile(f"[{_class(first)}]{rest}")
            object.__setattr__(self, "_pattern", pattern)

    @property
    def longest(self) -> int:
        """The length of the longest key."""
        if self.type is KeyType.ID:
            return len(str(MAX_ID))
        if self.type is KeyType.FIXED:
            return max(len(value) for value in self.values)
        return self.max_length

    def admits(self, key: str) -> bool:
        """Whether *key* is one of this kind's keys."""
        if self.type is KeyType.ID:
            return _ID.fullmatch(key) is not None and int(key) <= MAX_ID
        if self.type is KeyType.FIXED:
            return key in self.values
        assert self._pattern is not None
        return self._pattern.fullmatch(key) is not None

    def why_not(self, kind: str) -> str:
        """What a refused key of *kind* breaks, for :class:`InvalidChannel`."""
        if self.type is KeyType.ID:
            return "the id must be a decimal integer from 1 to 2**63-1"
        if self.type is KeyType.FIXED:
            names = ", ".join(f"{kind}:{value}" for value in self.values)
            return f"the only {kind} channel{'s are' if len(self.values) > 1 else ' is'} {names}"
        first = self.first_chars or self.chars
        span = (
            str(self.max_length)
            if self.min_length == self.max_length
            else f"{self.min_length}-{self.max_length}"
        )
        return (
            f"a {kind} name is {span} characters of {_spaced(self.chars)},"
            f" starting with {_spaced(first)}"
        )


def char_parts(spec: str) -> list[str]:
    """A character-set spec (see :class:`KeyGrammar`) cut into ranges (``a-z``) and single
    characters: ``a-z0-9.-`` gives ``["a-z", "0-9", ".", "-"]``."""
    parts: list[str] = []
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-" and _same_class(spec[i], spec[i + 2]):
            parts.append(spec[i : i + 3])
            i += 3
        else:
            parts.append(spec[i])
            i += 1
    return parts


def char_set(spec: str) -> frozenset[str]:
    """The characters of a character-set spec (see :class:`KeyGrammar`)."""
    out: set[str] = set()
    for part in char_parts(spec):
        out.update(chr(c) for c in range(ord(part[0]), ord(part[-1]) + 1))
    return frozenset(out)


def _same_class(a: str, b: str) -> bool:
    return a <= b and any(x <= a <= y and x <= b <= y for x, y in ("az", "AZ", "09"))


def _class(chars: frozenset[str]) -> str:
    return "".join(re.escape(c) for c in sorted(chars))


def _spaced(spec: str) -> str:
    """``a-z0-9+#.-`` as ``a-z 0-9 + # . -`` (ranges kept)."""
    return " ".join(char_parts(spec))


@dataclass(frozen=True, slots=True)
class ConflationRule:
    """A publication whose data is an object with every field of *when* equal to its value
    supersedes a queued one of the same channel with the same key: the values of *when*,
    then those of the data's *by* fields (each must be a string, else it never conflates)."""

    when: tuple[tuple[str, str], ...]
    by: tuple[str, ...]

    def key(self, data: object) -> ConflationKey | None:
        """The key of *data* under this rule, None when it does not apply."""
        if not isinstance(data, dict):
            return None
        for name, value in self.when:
            if data.get(name) != value:
                return None
        values = [data.get(name) for name in self.by]
        if not all(isinstance(value, str) for value in values):
            return None
        return (*(value for _, value in self.when), *(str(value) for value in values))


@dataclass(frozen=True, slots=True)
class Namespace:
    """One kind of channel and its rules (one ``[[namespace]]`` entry of the file)."""

    name: str
    key: KeyGrammar
    subscribe: Access
    history_size: int | None = None
    """None: the installation's ``history_size`` (HERALD_HISTORY_SIZE)."""
    history_ttl_s: float | None = None
    """None: the installation's ``history_ttl_s`` (HERALD_HISTORY_TTL_S)."""
    max_data_bytes: int = 64 * 1024
    """The largest publication's data, as UTF-8 JSON (herald_contract.envelope.pack_data)."""
    conflation: tuple[ConflationRule, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        known = ChannelKind._value2member_map_.get(self.name)
        if known is not None:
            object.__setattr__(self, "name", known)  # parsed kinds compare `is` with ChannelKind

    def conflation_key(self, data: object) -> ConflationKey | None:
        """The key of the first rule that applies to *data*; None: never conflated."""
        for rule in self.conflation:
            key = rule.key(data)
            if key is not None:
                return key
        return None


def grants_channel(grants: Sequence[str], name: str) -> bool:
    """Whether a token's ``channels`` claim *grants* covers channel *name*: an entry equal to
    it, or an entry ``<kind>:<prefix>*`` (a kind, a colon, then any key starting with
    ``<prefix>``; ``feed:*`` is every ``feed`` channel)."""
    for grant in grants:
        if grant == name:
            return True
        if grant.endswith("*") and ":" in grant and name.startswith(grant[:-1]):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Channel:
    """A valid channel name, parsed."""

    name: str
    kind: str
    """The kind's name (a :class:`ChannelKind` member for a kind of the shipped file)."""
    key: str
    """The part after the colon: the question or user id, the tag, or ``"new"``."""
    namespace: Namespace = field(repr=False, compare=False)

    @property
    def is_private(self) -> bool:
        """Whether some connections may not subscribe (a ``user`` or ``token`` kind)."""
        return self.namespace.subscribe is not Access.ANYONE

    def readable_by(self, user_id: str | None, grants: Sequence[str] = ()) -> bool:
        """Whether a connection authenticated as *user_id* (None: anonymous) whose token's
        ``channels`` claim is *grants* may subscribe (docs/namespaces.md#who-may-subscribe)."""
        access = self.namespace.subscribe
        if access is Access.ANYONE:
            return True
        if access is Access.USER:
            return user_id is not None and user_id == self.key
        return grants_channel(grants, self.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Namespaces:
    """Every kind of an installation, by name (file order kept)."""

    kinds: Mapping[str, Namespace]
    source: str = ""
    """Where they were read from (a path, or the shipped file), for messages."""

    def parse(self, name: object) -> Channel:
        """Parse and validate a channel name; raise :class:`InvalidChannel` if it breaks the
        grammar."""
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
        namespace = self.kinds.get(prefix)
        if namespace is None:
            raise InvalidChannel(name, f"unknown kind; expected {self._kind_list()}")
        if not namespace.key.admits(rest):
            raise InvalidChannel(name, namespace.key.why_not(namespace.name))
        return Channel(name, namespace.name, rest, namespace)

    def _kind_list(self) -> str:
        names = list(self.kinds)
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

    def namespace_of(self, channel: str) -> Namespace | None:
        """The namespace of a channel name's kind (the name is not checked otherwise)."""
        return self.kinds.get(channel.partition(":")[0])

    def conflation_key(self, channel: str, data: object) -> ConflationKey | None:
        """The conflation key of a publication of *channel* (a valid name) carrying *data*;
        None when it must never be conflated."""
        namespace = self.namespace_of(channel)
        return None if namespace is None else namespace.conflation_key(data)

    def max_data_bytes(self, channel: str, default: int = 64 * 1024) -> int:
        """The largest data *channel* takes (*default* for a kind this file lacks)."""
        namespace = self.namespace_of(channel)
        return default if namespace is None else namespace.max_data_bytes

    def retention(self) -> dict[str, Retention]:
        """The kinds whose history retention the file sets, with what it sets (a field left
        unset is None: the installation's setting applies)."""
        return {
            name: Retention(ns.history_size, ns.history_ttl_s)
            for name, ns in self.kinds.items()
            if ns.history_size is not None or ns.history_ttl_s is not None
        }
