"""The channel grammar of a namespace file as one regular expression, for the OpenAPI
document (``pattern`` of every ``channel``), so that a client generated from the document,
or schemathesis, knows which names exist.

The expression accepts exactly what :meth:`herald_contract.namespaces.Namespaces.parse`
accepts, together with ``maxLength`` :data:`herald_contract.namespaces.MAX_CHANNEL_LENGTH`
(tests/publish_api/test_grammar.py checks both ways). It is written in the subset common to
Python's ``re`` and ECMA-262 (classes, counted repeats, alternation): no look-arounds, and
inside a class only ``\\ ] [ ^ -`` escaped.
"""

from __future__ import annotations

from herald_contract.namespaces import MAX_ID, KeyGrammar, KeyType, Namespaces, char_set

_SPECIAL = set(".^$|?*+()[]{}\\/")


def _literal(text: str) -> str:
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in text)


def _class(chars: frozenset[str]) -> str:
    return "[" + "".join(f"\\{c}" if c in "\\][^-" else c for c in sorted(chars)) + "]"


def _digits(low: str, high: str) -> str:
    return low if low == high else f"[{low}-{high}]"


def up_to(limit: int) -> str:
    """Decimal integers from 1 to *limit*, without leading zeros."""
    top = str(limit)
    options = [f"[1-9][0-9]{{0,{len(top) - 2}}}"] if len(top) > 1 else []
    for i, digit in enumerate(top):
        low = "1" if i == 0 else "0"
        if digit > low:
            below = _digits(low, str(int(digit) - 1))
            rest = len(top) - i - 1
            options.append(top[:i] + below + (f"[0-9]{{{rest}}}" if rest else ""))
    options.append(top)
    return "(?:" + "|".join(options) + ")"


def key_pattern(key: KeyGrammar) -> str:
    if key.type is KeyType.ID:
        return up_to(MAX_ID)
    if key.type is KeyType.FIXED:
        return "(?:" + "|".join(_literal(value) for value in key.values) + ")"
    first = _class(char_set(key.first_chars or key.chars))
    rest = _class(char_set(key.chars))
    return f"{first}{rest}{{{key.min_length - 1},{key.max_length - 1}}}"


def channel_pattern(namespaces: Namespaces) -> str:
    """``^(?:<kind>:<key>|...)$`` for every kind of *namespaces*."""
    kinds = [f"{_literal(name)}:{key_pattern(ns.key)}" for name, ns in namespaces.kinds.items()]
    return "^(?:" + "|".join(kinds) + ")$"
