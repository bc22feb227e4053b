"""herald_contract/namespaces.py and namespaces_file.py: the namespace file, checked and used."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald_contract.errors import InvalidChannel
from herald_contract.namespaces import Access, ChannelKind, KeyType, grants_channel
from herald_contract.namespaces_file import (
    NamespaceFileError,
    default_namespaces,
    load_namespaces,
    namespaces_from_toml,
)

FEED = """
[[namespace]]
name = "feed"
subscribe = "token"
key = { type = "name", max_length = 20, chars = "a-z0-9_" }
history_size = 50
history_ttl_s = 60
max_data_bytes = 1024
"""


def refused(text: str) -> NamespaceFileError:
    """The error of a file that must be refused, checked to be one line naming the file."""
    with pytest.raises(NamespaceFileError) as caught:
        namespaces_from_toml(text, "ns.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("ns.toml: ")
    return caught.value


def entry(**fields: str) -> str:
    """One [[namespace]] entry: a valid public id kind named x, with *fields* replaced
    (a value of "" drops the field)."""
    values = {"name": '"x"', "subscribe": '"anyone"', "key": '{ type = "id" }', **fields}
    lines = [f"{name} = {value}" for name, value in values.items() if value]
    return "[[namespace]]\n" + "\n".join(lines) + "\n"


def test_the_shipped_file_holds_the_five_kinds_of_the_q_and_a_site() -> None:
    namespaces = default_namespaces()
    assert list(namespaces.kinds) == ["question", "questions", "tag", "user", "probe"]
    assert [ns.name for ns in namespaces.kinds.values()] == list(ChannelKind)
    assert namespaces.kinds["user"].subscribe is Access.USER
    assert namespaces.kinds["questions"].key.values == ("new",)
    assert all(ns.max_data_bytes == 64 * 1024 for ns in namespaces.kinds.values())
    assert namespaces.retention() == {}  # the installation's settings, as before


def test_a_new_kind_with_its_own_retention_and_limit_is_read() -> None:
    namespaces = namespaces_from_toml(FEED, "feed.toml")
    feed = namespaces.kinds["feed"]
    assert (feed.subscribe, feed.key.type, feed.key.max_length) == (Access.TOKEN, KeyType.NAME, 20)
    assert (feed.history_size, feed.history_ttl_s, feed.max_data_bytes) == (50, 60.0, 1024)
    assert namespaces.parse("feed:alice_7").kind == "feed"
    assert namespaces.max_data_bytes("feed:alice_7") == 1024
    with pytest.raises(InvalidChannel, match="unknown kind; expected feed"):
        namespaces.parse("question:1")


def test_a_token_kind_is_readable_only_with_a_grant_in_the_token() -> None:
    channel = namespaces_from_toml(FEED).parse("feed:alice")
    assert channel.is_private
    assert not channel.readable_by("7")
    assert not channel.readable_by(None, ["feed:bob"])
    assert channel.readable_by("7", ["feed:bob", "feed:alice"])
    assert channel.readable_by(None, ["feed:al*"])
    assert channel.readable_by(None, ["feed:*"])
    assert not grants_channel(["fe*"], "feed:alice")  # a pattern names its kind


def test_conflation_rules_key_publications_as_the_file_says() -> None:
    text = entry(conflation='[{ when = { type = "likes" }, by = ["post", "lang"] }]')
    namespaces = namespaces_from_toml(text)
    assert namespaces.conflation_key("x:1", {"type": "likes", "post": "p1", "lang": "en"}) == (
        "likes",
        "p1",
        "en",
    )
    assert namespaces.conflation_key("x:1", {"type": "likes", "post": 7, "lang": "en"}) is None
    assert namespaces.conflation_key("x:1", {"type": "other", "post": "p1"}) is None
    assert namespaces.conflation_key("x:1", ["likes"]) is None


def test_the_shipped_conflation_keys_score_events_by_post() -> None:
    namespaces = default_namespaces()
    score = {"type": "score", "post": "answer:7", "score": 3, "version": 9}
    assert namespaces.conflation_key("question:1", score) == ("score", "answer:7")
    assert namespaces.conflation_key("user:1", score) is None


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (entry(colour='"red"'), "namespace 1 (x): colour: unknown field"),
        ("title = 'x'\n" + entry(), "title: unknown field"),
        (entry(key='{ type = "id", max_length = 3 }'), "key.max_length: unknown field of a id key"),
        (entry(conflation='[{ when = { type = "a" }, on = ["b"] }]'), "conflation[1].on"),
    ],
)
def test_an_unknown_field_is_refused(text: str, names: str) -> None:
    assert names in str(refused(text))


def test_a_kind_declared_twice_is_refused_as_overlapping() -> None:
    error = refused(entry() + entry(key='{ type = "fixed", values = ["new"] }'))
    assert (error.entry, error.field) == ("namespace 2 (x)", "name")
    assert "overlaps namespace 1" in error.rule


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ('{ type = "name", max_length = 9, chars = "a-z{}" }', "key.chars"),
        ('{ type = "name", max_length = 9, chars = "a-z", first_chars = "{" }', "key.first_chars"),
        ('{ type = "fixed", values = ["new", "{x}"] }', "key.values"),
    ],
)
def test_braces_admitted_in_a_key_are_refused(key: str, field: str) -> None:
    error = refused(entry(key=key))
    assert error.field == field
    assert "hash tag" in error.rule


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ('{ type = "name", max_length = 9, chars = "a-z*" }', "wildcard"),
        ('{ type = "name", max_length = 9, chars = "a-z " }', "printable"),
        ('{ type = "name", max_length = 70, chars = "a-z" }', "longer than 64"),
        ('{ type = "name", min_length = 5, max_length = 4, chars = "a-z" }', "below min_length"),
        ('{ type = "fixed", values = ["a", "a"] }', "twice"),
    ],
)
def test_a_key_grammar_that_cannot_work_is_refused(key: str, why: str) -> None:
    assert why in refused(entry(key=key)).rule


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("history_size", "0"),
        ("history_size", "-5"),
        ("history_ttl_s", "0"),
        ("history_ttl_s", "-1.5"),
        ("history_ttl_s", "nan"),
        ("max_data_bytes", "0"),
    ],
)
def test_a_retention_or_limit_of_zero_or_below_is_refused(field: str, value: str) -> None:
    error = refused(entry(**{field: value}))
    assert (error.entry, error.field) == ("namespace 1 (x)", field)
    assert "must be" in error.rule


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"subscribe": ""}, "subscribe"),
        ({"key": ""}, "key"),
        ({"key": "{ max_length = 3 }"}, "key.type"),
        ({"key": '{ type = "name", max_length = 3 }'}, "key.chars"),
        ({"key": '{ type = "fixed" }'}, "key.values"),
    ],
)
def test_a_missing_required_field_is_refused(fields: dict[str, str], field: str) -> None:
    error = refused(entry(**fields))
    assert error.field == field
    assert "missing" in error.rule


@pytest.mark.parametrize(
    ("fields", "field", "why"),
    [
        ({"history_size": '"500"'}, "history_size", "whole number, not str '500'"),
        ({"history_size": "true"}, "history_size", "whole number"),
        ({"history_ttl_s": '"15m"'}, "history_ttl_s", "number of seconds"),
        ({"subscribe": '"everyone"'}, "subscribe", "one of anyone, user, token"),
        ({"key": '"id"'}, "key", "must be a table"),
        ({"key": '{ type = "regex" }'}, "key.type", "one of id, name, fixed"),
        ({"name": '"Feed"'}, "name", "not a kind name"),
        ({"name": '"a:b"'}, "name", "not a kind name"),
        ({"description": "3"}, "description", "a string"),
        ({"conflation": '{ by = ["post"] }'}, "conflation", "array of tables"),
        ({"conflation": "[{}]"}, "conflation[1]", "needs when or by"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(fields: dict[str, str], field: str, why: str) -> None:
    error = refused(entry(**fields))
    assert error.field == field
    assert why in error.rule


def test_a_user_kind_needs_id_keys() -> None:
    error = refused(entry(subscribe='"user"', key='{ type = "name", max_length=5, chars="a-z" }'))
    assert (error.field, "needs key.type = 'id'" in error.rule) == ("subscribe", True)


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "no [[namespace]]"), ("namespace = 3", "array of tables"), ("[[namespace]\n", "TOML")],
)
def test_a_file_without_namespaces_or_not_toml_is_refused(text: str, why: str) -> None:
    assert why in str(refused(text))


def test_an_entry_without_a_usable_name_is_named_by_its_place() -> None:
    assert refused(entry() + entry(name="7")).entry == "namespace 2"


def test_loading_names_the_path_of_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(NamespaceFileError, match=f"^{missing}: cannot read"):
        load_namespaces(missing)
    bad = tmp_path / "bad.toml"
    bad.write_text(entry(history_size="0"))
    with pytest.raises(NamespaceFileError, match=f"^{bad}: namespace 1 \\(x\\): history_size"):
        load_namespaces(bad)


def test_loading_nothing_gives_the_shipped_file(tmp_path: Path) -> None:
    assert load_namespaces(None) is default_namespaces()
    assert load_namespaces("") is default_namespaces()
    path = tmp_path / "feed.toml"
    path.write_text(FEED)
    assert list(load_namespaces(path).kinds) == ["feed"]
