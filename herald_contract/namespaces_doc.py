"""The channel grammar of docs/protocol.md#channels, written from a namespace file.

The part of docs/protocol.md between ``<!-- namespaces:begin -->`` and
``<!-- namespaces:end -->`` is :func:`channels_section` of the shipped file;
tests/docs/test_namespaces_doc.py fails when they disagree. After changing
``herald_contract/namespaces.toml``, rewrite it with::

    .venv/bin/python -m herald_contract.namespaces_doc docs/protocol.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from herald_contract.namespaces import (
    MAX_CHANNEL_LENGTH,
    Access,
    KeyType,
    Namespace,
    Namespaces,
    char_parts,
)
from herald_contract.namespaces_file import default_namespaces

BEGIN = "<!-- namespaces:begin (generated from herald_contract/namespaces.toml) -->"
END = "<!-- namespaces:end -->"

_WHO = {
    Access.ANYONE: "anyone",
    Access.USER: "only a connection authenticated as user `<id>`",
    Access.TOKEN: "only a token whose `channels` claim grants it",
}


def _pattern(ns: Namespace) -> str:
    if ns.key.type is KeyType.FIXED:
        return " ".join(f"`{ns.name}:{value}`" for value in ns.key.values)
    return f"`{ns.name}:<{'id' if ns.key.type is KeyType.ID else 'name'}>`"


def _retention(ns: Namespace) -> str:
    size = "`history_size`" if ns.history_size is None else str(ns.history_size)
    ttl_s = "`history_ttl_s`" if ns.history_ttl_s is None else f"{ns.history_ttl_s:g} s"
    return f"{size}, {ttl_s}"


def _abnf_chars(spec: str) -> str:
    """A character-set spec as ABNF alternatives (``a-z0-9.`` -> ``%x61-7A / DIGIT / "."``)."""
    parts: list[str] = []
    for part in char_parts(spec):
        if part == "0-9":
            parts.append("DIGIT")
        elif len(part) == 3:
            parts.append(f"%x{ord(part[0]):02X}-{ord(part[2]):02X}")
        else:
            parts.append(f'"{part}"' if part != '"' else "%x22")
    return " / ".join(parts)


def _abnf(namespaces: Namespaces) -> list[str]:
    rules: list[tuple[str, str, str]] = []
    names = [ns.name.replace("_", "-") for ns in namespaces.kinds.values()]
    rules.append(("channel", " / ".join(names), ""))
    tail: list[tuple[str, str, str]] = []
    uses_id = False
    for ns, rule in zip(namespaces.kinds.values(), names, strict=True):
        key = ns.key
        if key.type is KeyType.FIXED:
            values = " / ".join(f'%s"{ns.name}:{value}"' for value in key.values)
            rules.append((rule, values, ""))
        elif key.type is KeyType.ID:
            uses_id = True
            rules.append((rule, f'%s"{ns.name}:" id', ""))
        else:
            first, char = f"{rule}-first", f"{rule}-char"
            more = key.max_length - 1
            least = key.min_length - 1
            repeat = f"{least}*{more}" if least else f"*{more}"
            span = f"{key.min_length} to {key.max_length} characters"
            rules.append((rule, f'%s"{ns.name}:" {rule}-name', ""))
            tail.append((f"{rule}-name", f"{first} {repeat}{char}", span))
            tail.append((first, _abnf_chars(key.first_chars or key.chars), key.first_chars))
            tail.append((char, _abnf_chars(key.chars), key.chars))
    if uses_id:
        tail.insert(
            0,
            ("id", "%x31-39 *18DIGIT", "1 to 9223372036854775807 (2^63-1), no leading zero"),
        )
    width = max(len(name) for name, _, _ in rules + tail)
    lines = []
    for name, body, comment in rules + tail:
        line = f"{name.ljust(width)} = {body}"
        lines.append(f"{line.ljust(width + 30)} ; {comment}".rstrip(" ;") if comment else line)
    return lines


def channels_section(namespaces: Namespaces) -> str:
    """The generated part of docs/protocol.md#channels: the table and the ABNF."""
    rows = [
        "| channel | who may subscribe | history kept | largest data | what it carries |",
        "|---|---|---|---|---|",
    ]
    for ns in namespaces.kinds.values():
        rows.append(
            f"| {_pattern(ns)} | {_WHO[ns.subscribe]} | {_retention(ns)} |"
            f" {ns.max_data_bytes} bytes | {ns.description} |"
        )
    longest = max(len(ns.name) + 1 + ns.key.longest for ns in namespaces.kinds.values())
    return "\n".join(
        [
            BEGIN,
            *rows,
            "",
            'In ABNF (RFC 5234; `%s"..."` is a case-sensitive string, RFC 7405):',
            "",
            "```abnf",
            *_abnf(namespaces),
            "```",
            "",
            f"A name is at most {MAX_CHANNEL_LENGTH} ASCII characters; valid names of these kinds"
            f" are at most {longest}.",
            END,
        ]
    )


def rewrite(text: str, namespaces: Namespaces) -> str:
    """*text* (docs/protocol.md) with its generated part replaced."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + channels_section(namespaces) + text[end:]


def main(argv: list[str]) -> int:
    """Rewrite the generated part of each file named in *argv* from the shipped file."""
    for name in argv:
        path = Path(name)
        path.write_text(rewrite(path.read_text(encoding="utf-8"), default_namespaces()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
