"""socketsrv/publication.py: a publication's conflation key follows the namespace file."""

from __future__ import annotations

from herald_contract.envelope import build_envelope, pack_data
from herald_contract.namespaces_file import namespaces_from_toml
from socketsrv.publication import decode_publication

FILE = """
[[namespace]]
name = "post"
subscribe = "anyone"
key = { type = "id" }
conflation = [{ when = { type = "likes" }, by = ["post"] }]
"""


def envelope(data: object) -> bytes:
    return build_envelope("e1", 1, 0, "", pack_data(data))


def test_the_files_conflation_rule_keys_the_publication() -> None:
    namespaces = namespaces_from_toml(FILE)
    likes = decode_publication("post:1", envelope({"type": "likes", "post": "p9"}), namespaces)
    assert likes.conflation_key == ("likes", "p9")
    other = decode_publication("post:1", envelope({"type": "comment", "post": "p9"}), namespaces)
    assert other.conflation_key is None


def test_without_a_file_the_shipped_rules_apply() -> None:
    score = decode_publication("question:1", envelope({"type": "score", "post": "answer:2"}))
    assert score.conflation_key == ("score", "answer:2")
