"""The Redis key layout keeps every key of one channel in one Redis Cluster hash slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from herald_contract.keys import KeyLayout

CHANNELS = ["question:1", "question:9223372036854775807", "questions:new", "tag:c++", "user:42"]


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("prefix", ["herald", "staging.herald"])
def test_all_keys_of_a_channel_share_one_cluster_slot(channel: str, prefix: str) -> None:
    keys = KeyLayout(prefix)
    names = [
        keys.history(channel),
        keys.meta(channel),
        keys.event_prefix(channel) + "vote-123",
        keys.live(channel),
    ]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_different_channels_spread_over_slots() -> None:
    keys = KeyLayout()
    slots = {key_slot(keys.meta(f"question:{i}").encode()) for i in range(1, 1001)}
    assert len(slots) > 900


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_live_channel_name_maps_back_to_its_channel(channel: str) -> None:
    keys = KeyLayout()
    assert keys.channel_of_live(keys.live(channel)) == channel


@pytest.mark.parametrize(
    "name", ["herald:{question:1}:meta", "other:{question:1}:live", "question:1", ""]
)
def test_names_that_are_not_live_channels_map_to_nothing(name: str) -> None:
    assert KeyLayout().channel_of_live(name) is None
