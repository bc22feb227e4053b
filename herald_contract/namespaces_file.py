"""The namespace file: TOML text in, :class:`~herald_contract.namespaces.Namespaces` out.

The format is in docs/namespaces.md; ``herald_contract/namespaces.toml`` (shipped in the
package) is the default, the Q&A site's five kinds as they have always behaved.

* :func:`namespaces_from_toml` and :func:`namespaces_from_document` are pure: text or a parsed
  document in, namespaces out, or :class:`NamespaceFileError` naming the entry and the rule
  it breaks in one line (unknown fields, a kind declared twice, braces admitted in a key, a
  retention of zero, a missing field, a value of the wrong type, ...);
* :func:`load_namespaces` is the edge: it reads a path (None: the shipped file, read once).

Every program of an installation (the fleet, the publishing library, the Q&A core, the
prober) loads the same file: ``HERALD_NAMESPACES_FILE`` (docs/configuration.md).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from herald_contract.errors import HeraldError
from herald_contract.namespaces import (
    FORBIDDEN_KEY_CHARACTERS,
    MAX_CHANNEL_LENGTH,
    Access,
    ConflationRule,
    KeyGrammar,
    KeyType,
    Namespace,
    Namespaces,
    char_set,
)

__all__ = [
    "DEFAULT_FILE",
    "MAX_DATA_BYTES_LIMIT",
    "NamespaceFileError",
    "default_namespaces",
    "load_namespaces",
    "namespaces_from_document",
    "namespaces_from_toml",
]

DEFAULT_FILE = "namespaces.toml"
"""The shipped file, a resource of the ``herald_contract`` package."""
MAX_DATA_BYTES_LIMIT = 1024 * 1024
"""The most ``max_data_bytes`` may be: a bigger publication would not fit a connection's
default outbox (``outbox_max_bytes``, 1 MiB) and would close every subscriber."""
DEFAULT_MAX_DATA_BYTES = 64 * 1024

_KIND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_TOP_FIELDS = ("namespace",)
_FIELDS = (
    "name",
    "description",
    "subscribe",
    "key",
    "history_size",
    "history_ttl_s",
    "max_data_bytes",
    "conflation",
)
_REQUIRED = ("name", "subscribe", "key")
_KEY_FIELDS = {
    KeyType.ID: ("type",),
    KeyType.NAME: ("type", "min_length", "max_length", "chars", "first_chars"),
    KeyType.FIXED: ("type", "values"),
}
_CONFLATION_FIELDS = ("when", "by")

T = TypeVar("T")


class NamespaceFileError(HeraldError, ValueError):
    """A namespace file that cannot be used: *source* (its path), *entry* (``namespace 3
    (tag)``, None for the file as a whole), *field* (``key.chars``, None for the entry) and
    *rule* (what is wrong). The message is one line: ``source: entry: field: rule``."""

    def __init__(
        self, rule: str, *, entry: str | None = None, field: str | None = None, source: str = ""
    ) -> None:
        self.source = source
        self.entry = entry
        self.field = field
        self.rule = rule
        parts = [p for p in (source, entry, field) if p]
        super().__init__(": ".join([*parts, rule.replace("\n", " ")]))

    def at(self, source: str) -> NamespaceFileError:
        """The same error, naming *source*."""
        return NamespaceFileError(self.rule, entry=self.entry, field=self.field, source=source)


class _Problem(Exception):
    """Raised while checking one entry: *field* broke *rule* (the entry is added above)."""

    def __init__(self, field: str | None, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(rule)


def namespaces_from_toml(text: str, source: str = "") -> Namespaces:
    """The namespaces of TOML *text*; raise :class:`NamespaceFileError` (no I/O)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NamespaceFileError(f"not valid TOML: {exc}", source=source) from None
    try:
        return namespaces_from_document(document, source)
    except NamespaceFileError as exc:
        raise exc.at(source) from None


def namespaces_from_document(document: Mapping[str, Any], source: str = "") -> Namespaces:
    """The namespaces of a parsed document; raise :class:`NamespaceFileError` (pure)."""
    for name in document:
        if name not in _TOP_FIELDS:
            raise NamespaceFileError(_unknown(name, _TOP_FIELDS), field=name, source=source)
    entries = document.get("namespace")
    if entries is None:
        raise NamespaceFileError("no [[namespace]] entry: a file declares at least one kind")
    if not isinstance(entries, list) or not entries:
        raise NamespaceFileError("namespace must be a non-empty array of tables ([[namespace]])")
    kinds: dict[str, Namespace] = {}
    declared_at: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        label = f"namespace {index}"
        given = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(given, str):
            label = f"namespace {index} ({given})"
        try:
            namespace = _namespace(entry)
        except _Problem as problem:
            raise NamespaceFileError(problem.rule, entry=label, field=problem.field) from None
        if namespace.name in declared_at:
            first = declared_at[namespace.name]
            raise NamespaceFileError(
                f"overlaps namespace {first}: the kind {namespace.name!r} is declared twice"
                " (each kind has one namespace)",
                entry=label,
                field="name",
            )
        declared_at[namespace.name] = index
        kinds[namespace.name] = namespace
    return Namespaces(kinds, source)


def _namespace(entry: object) -> Namespace:
    if not isinstance(entry, dict):
        raise _Problem(None, f"must be a table, not {_shown(entry)}")
    for name in entry:
        if name not in _FIELDS:
            raise _Problem(name, _unknown(name, _FIELDS))
    for name in _REQUIRED:
        if name not in entry:
            raise _Problem(name, "missing (required)")
    name = _typed(entry, "name", str, "a string")
    if _KIND_NAME.fullmatch(name) is None:
        raise _Problem(
            "name",
            f"{name!r} is not a kind name: 1-32 characters of a-z 0-9 _ -, starting with a-z",
        )
    subscribe = _choice(entry, "subscribe", Access)
    key = _key(entry["key"], name)
    if subscribe is Access.USER and key.type is not KeyType.ID:
        raise _Problem(
            "subscribe", "'user' needs key.type = 'id' (a token's sub is a user id, its key)"
        )
    description = _typed(entry, "description", str, "a string") if "description" in entry else ""
    return Namespace(
        name=name,
        key=key,
        subscribe=subscribe,
        history_size=_optional(entry, "history_size", _positive_int),
        history_ttl_s=_optional(entry, "history_ttl_s", _positive_seconds),
        max_data_bytes=_optional(entry, "max_data_bytes", _data_bytes) or DEFAULT_MAX_DATA_BYTES,
        conflation=_conflation(entry.get("conflation", [])),
        description=description,
    )


def _key(value: object, kind: str) -> KeyGrammar:
    if not isinstance(value, dict):
        raise _Problem("key", f"must be a table ({{ type = ... }}), not {_shown(value)}")
    if "type" not in value:
        raise _Problem("key.type", "missing (required): one of id, name, fixed")
    key_type = _choice(value, "type", KeyType, prefix="key.")
    for name in value:
        if name not in _KEY_FIELDS[key_type]:
            raise _Problem(f"key.{name}", _unknown(name, _KEY_FIELDS[key_type], f"{key_type} key"))
    room = MAX_CHANNEL_LENGTH - len(kind) - 1
    if key_type is KeyType.ID:
        grammar = KeyGrammar(KeyType.ID)
    elif key_type is KeyType.FIXED:
        grammar = KeyGrammar(KeyType.FIXED, values=_fixed_values(value))
    else:
        grammar = _name_grammar(value)
    if grammar.longest > room:
        raise _Problem(
            "key",
            f"admits keys of {grammar.longest} characters: a {kind} channel name would be"
            f" longer than {MAX_CHANNEL_LENGTH} (at most {room} for the key)",
        )
    return grammar


def _name_grammar(value: dict[str, Any]) -> KeyGrammar:
    for name in ("max_length", "chars"):
        if name not in value:
            raise _Problem(f"key.{name}", "missing (required for a name key)")
    min_length = _optional(value, "min_length", _positive_int, prefix="key.") or 1
    max_length = _positive_int(value["max_length"], "key.max_length")
    if max_length < min_length:
        raise _Problem("key.max_length", f"{max_length} is below min_length ({min_length})")
    chars = _char_spec(value, "chars")
    first = _char_spec(value, "first_chars") if "first_chars" in value else ""
    return KeyGrammar(
        KeyType.NAME, min_length=min_length, max_length=max_length, chars=chars, first_chars=first
    )


def _char_spec(value: dict[str, Any], name: str) -> str:
    spec = _typed(value, name, str, "a string of characters and ranges (a-z0-9-)", "key.")
    if not spec:
        raise _Problem(f"key.{name}", "empty: a key needs at least one character")
    _check_characters(char_set(spec), f"key.{name}")
    return spec


def _check_characters(chars: frozenset[str], where: str) -> None:
    braces = sorted(chars & FORBIDDEN_KEY_CHARACTERS - {"*"})
    if braces:
        shown = " or ".join(repr(c) for c in braces)
        raise _Problem(where, f"admits {shown}: braces would break the Redis Cluster hash tag")
    if "*" in chars:
        raise _Problem(where, "admits '*': the wildcard of a token's channels claim")
    odd = sorted(c for c in chars if not "!" <= c <= "~")
    if odd:
        raise _Problem(where, f"admits {odd[0]!r}: only printable ASCII, no spaces")


def _fixed_values(value: dict[str, Any]) -> tuple[str, ...]:
    if "values" not in value:
        raise _Problem("key.values", "missing (required for a fixed key)")
    values = value["values"]
    if not isinstance(values, list) or not values:
        raise _Problem("key.values", f"must be a non-empty array of strings, not {_shown(values)}")
    for item in values:
        if not isinstance(item, str) or not item:
            raise _Problem("key.values", f"must hold non-empty strings, not {_shown(item)}")
        _check_characters(frozenset(item), "key.values")
    if len(set(values)) != len(values):
        raise _Problem("key.values", "lists a key twice")
    return tuple(values)


def _conflation(value: object) -> tuple[ConflationRule, ...]:
    if not isinstance(value, list):
        raise _Problem("conflation", f"must be an array of tables, not {_shown(value)}")
    rules = []
    for index, rule in enumerate(value, start=1):
        where = f"conflation[{index}]"
        if not isinstance(rule, dict):
            raise _Problem(
                where, f"must be a table ({{ when = ..., by = ... }}), not {_shown(rule)}"
            )
        for name in rule:
            if name not in _CONFLATION_FIELDS:
                raise _Problem(f"{where}.{name}", _unknown(name, _CONFLATION_FIELDS))
        when = rule.get("when", {})
        if not isinstance(when, dict) or not all(isinstance(v, str) for v in when.values()):
            raise _Problem(f"{where}.when", "must be a table of strings ({ type = 'score' })")
        by = rule.get("by", [])
        if not isinstance(by, list) or not all(isinstance(v, str) and v for v in by):
            raise _Problem(f"{where}.by", "must be an array of field names (['post'])")
        if not when and not by:
            raise _Problem(where, "needs when or by: an empty key would conflate nothing apart")
        rules.append(ConflationRule(tuple(when.items()), tuple(by)))
    return tuple(rules)


def _positive_int(value: object, where: str) -> int:
    if type(value) is not int:
        raise _Problem(where, f"must be a whole number, not {_shown(value)}")
    if value < 1:
        raise _Problem(where, f"must be at least 1, not {value}")
    return value


def _positive_seconds(value: object, where: str) -> float:
    if type(value) not in (int, float):
        raise _Problem(where, f"must be a number of seconds, not {_shown(value)}")
    seconds = float(value)  # type: ignore[arg-type]
    if not math.isfinite(seconds) or seconds <= 0:
        raise _Problem(where, f"must be above 0, not {value}")
    return seconds


def _data_bytes(value: object, where: str) -> int:
    size = _positive_int(value, where)
    if size > MAX_DATA_BYTES_LIMIT:
        raise _Problem(where, f"must be at most {MAX_DATA_BYTES_LIMIT} (1 MiB), not {size}")
    return size


def _optional(
    entry: dict[str, Any], name: str, check: Callable[[object, str], T], prefix: str = ""
) -> T | None:
    return check(entry[name], prefix + name) if name in entry else None


def _typed(entry: dict[str, Any], name: str, kind: type[T], what: str, prefix: str = "") -> T:
    value = entry[name]
    if not isinstance(value, kind):
        raise _Problem(prefix + name, f"must be {what}, not {_shown(value)}")
    return value


def _choice(entry: dict[str, Any], name: str, enum: type[Any], prefix: str = "") -> Any:
    value = entry[name]
    choices = ", ".join(member.value for member in enum)
    if not isinstance(value, str) or value not in enum._value2member_map_:
        raise _Problem(prefix + name, f"must be one of {choices}, not {_shown(value)}")
    return enum(value)


def _unknown(name: str, known: tuple[str, ...], what: str = "") -> str:
    where = f" of a {what}" if what else ""
    return f"unknown field{where} (known: {', '.join(known)})"


def _shown(value: object) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:40] + "..."
    return f"{type(value).__name__} {text}"


@cache
def default_namespaces() -> Namespaces:
    """The shipped file's namespaces (read once per process)."""
    text = resources.files("herald_contract").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
    return namespaces_from_toml(text, f"herald_contract/{DEFAULT_FILE}")


def load_namespaces(path: str | Path | None) -> Namespaces:
    """The namespaces of the file at *path* (None or ``""``: the shipped file).

    Raises :class:`NamespaceFileError` naming *path* for a file that cannot be read or used.
    """
    if path is None or str(path) == "":
        return default_namespaces()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise NamespaceFileError(f"cannot read: {why}", source=str(path)) from None
    return namespaces_from_toml(text, str(path))
