"""The channel grammar (herald_contract/channels.py)."""

from __future__ import annotations

import pytest

from herald_contract.channels import MAX_CHANNEL_LENGTH, ChannelKind, parse_channel
from herald_contract.errors import InvalidChannel


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("question:1", ChannelKind.QUESTION, "1"),
        ("question:9223372036854775807", ChannelKind.QUESTION, "9223372036854775807"),
        ("questions:new", ChannelKind.NEW_QUESTIONS, "new"),
        ("tag:python", ChannelKind.TAG, "python"),
        ("tag:c++", ChannelKind.TAG, "c++"),
        ("tag:c#", ChannelKind.TAG, "c#"),
        ("tag:asp.net-core", ChannelKind.TAG, "asp.net-core"),
        ("tag:" + "a" * 35, ChannelKind.TAG, "a" * 35),
        ("user:7", ChannelKind.USER, "7"),
        ("probe:herald", ChannelKind.PROBE, "herald"),
        ("probe:eu-west-1", ChannelKind.PROBE, "eu-west-1"),
        ("probe:" + "a" * 32, ChannelKind.PROBE, "a" * 32),
    ],
)
def test_valid_names_parse_into_kind_and_key(name: str, kind: ChannelKind, key: str) -> None:
    channel = parse_channel(name)
    assert (channel.name, channel.kind, channel.key, str(channel)) == (name, kind, key, name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "question",
        "question:",
        "question:0",
        "question:007",
        "question:-1",
        "question:9223372036854775808",
        "question:1.5",
        "questions:old",
        "tag:",
        "tag:Python",
        "tag:-leading-dash",
        "tag:" + "a" * 36,
        "tag:{hash}",
        "tag:é",
        "user:abc",
        "answer:1",
        "probe:",
        "probe:Herald",
        "probe:-leading-dash",
        "probe:a.b",
        "probe:" + "a" * 33,
        "probe:{x}",
        "x" * (MAX_CHANNEL_LENGTH + 1),
    ],
)
def test_names_outside_the_grammar_are_refused(name: str) -> None:
    with pytest.raises(InvalidChannel) as caught:
        parse_channel(name)
    assert caught.value.name == name[: MAX_CHANNEL_LENGTH + 1]
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [None, 42, b"question:1", ["question:1"]])
def test_a_name_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidChannel, match="string"):
        parse_channel(value)


def test_only_user_channels_are_private_and_only_to_their_user() -> None:
    inbox = parse_channel("user:7")
    assert inbox.is_private
    assert inbox.readable_by("7")
    assert not inbox.readable_by("8")
    assert not inbox.readable_by(None)
    public = parse_channel("question:7")
    assert not public.is_private
    assert public.readable_by(None)
    assert public.readable_by("8")
    probe = parse_channel("probe:herald")
    assert not probe.is_private
    assert probe.readable_by(None)


def test_a_long_refused_name_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidChannel) as caught:
        parse_channel("q" * 200)
    assert len(str(caught.value)) < 150
