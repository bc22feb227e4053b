"""The OpenAPI document's channel pattern (publish_api/grammar.py) accepts exactly the names
the namespace file does."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from herald_contract.errors import InvalidChannel
from herald_contract.namespaces import MAX_CHANNEL_LENGTH, MAX_ID
from herald_contract.namespaces_file import default_namespaces
from publish_api.grammar import channel_pattern, up_to

NAMESPACES = default_namespaces()
PATTERN = re.compile(channel_pattern(NAMESPACES))


def accepted(name: str) -> bool:
    try:
        NAMESPACES.parse(name)
    except InvalidChannel:
        return False
    return True


def matches(name: str) -> bool:
    return len(name) <= MAX_CHANNEL_LENGTH and PATTERN.fullmatch(name) is not None


@settings(max_examples=300, database=None)
@given(st.from_regex(PATTERN, fullmatch=True))
def test_every_name_the_pattern_generates_is_a_channel(name: str) -> None:
    assert accepted(name) == (len(name) <= MAX_CHANNEL_LENGTH), name


@settings(max_examples=500, database=None)
@given(
    st.sampled_from(["question:", "questions:", "tag:", "user:", "probe:", "nope:", ""]),
    st.text(alphabet="0123456789abcxyz+#.-_:{}*AZ é", max_size=40),
)
def test_the_pattern_and_the_parser_agree_on_near_misses(kind: str, key: str) -> None:
    assert matches(kind + key) == accepted(kind + key), kind + key


def test_ids_up_to_the_largest_and_not_one_more() -> None:
    ids = re.compile(up_to(MAX_ID))
    for n in (1, 9, 10, 99, 100, MAX_ID - 1, MAX_ID, 9_123_372_036_854_775_807):
        assert ids.fullmatch(str(n)), n
    for text in ("0", "01", str(MAX_ID + 1), "9" * 19, "1" * 20, ""):
        assert not ids.fullmatch(text), text
    assert [matches(f"question:{n}") for n in (MAX_ID, MAX_ID + 1)] == [True, False]
