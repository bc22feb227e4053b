"""docs/protocol.md#channels is the shipped namespace file, and docs/namespaces.md its format."""

from __future__ import annotations

import re
from pathlib import Path

from herald_contract.namespaces_doc import BEGIN, END, channels_section, rewrite
from herald_contract.namespaces_file import default_namespaces, namespaces_from_toml

DOCS = Path(__file__).resolve().parents[2] / "docs"
PROTOCOL = DOCS / "protocol.md"
NAMESPACES = DOCS / "namespaces.md"
REGENERATE = ".venv/bin/python -m herald_contract.namespaces_doc docs/protocol.md"


def test_the_channel_grammar_in_protocol_md_is_the_shipped_file() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    documented = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert documented == channels_section(default_namespaces()), f"run {REGENERATE}"


def test_a_change_to_the_file_shows_as_a_disagreement() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    changed = namespaces_from_toml(
        '[[namespace]]\nname = "feed"\nsubscribe = "token"\nhistory_size = 50\n'
        'key = { type = "name", max_length = 20, chars = "a-z0-9_" }\n'
    )
    assert rewrite(text, changed) != text
    assert "`feed:<name>` | only a token whose `channels` claim grants it | 50," in rewrite(
        text, changed
    )


def test_every_toml_example_in_namespaces_md_is_a_valid_file() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", NAMESPACES.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        assert namespaces_from_toml(block).kinds


def test_namespaces_md_names_every_field_of_an_entry() -> None:
    text = NAMESPACES.read_text(encoding="utf-8")
    for field in (
        "name",
        "description",
        "subscribe",
        "key",
        "history_size",
        "history_ttl_s",
        "max_data_bytes",
        "conflation",
    ):
        assert f"| `{field}` |" in text
