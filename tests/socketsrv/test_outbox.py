"""The held frames of a congested connection (socketsrv/outbox.py), without I/O."""

from __future__ import annotations

import json
from typing import Any

from socketsrv.outbox import HeldFrames
from socketsrv.protocol.commands import WireFormat
from socketsrv.publication import Publication

JSON = WireFormat.JSON
CHANNEL = "question:7"


def pub(offset: int, data: Any, channel: str = CHANNEL) -> Publication:
    return Publication(channel, "e1", offset, 0, data)


def score(post: str, value: int) -> dict[str, Any]:
    return {"type": "score", "question": 7, "post": post, "score": value, "version": value}


def held_with(*pubs: Publication) -> HeldFrames:
    held = HeldFrames(JSON)
    for p in pubs:
        held.add(p.frame(JSON), p)
    return held


def messages(frames: list[bytes]) -> list[dict[str, Any]]:
    """Each frame's JSON (the frames here are short: a 2-byte header)."""
    return [json.loads(frame[2:] if frame[1] < 126 else frame[4:]) for frame in frames]


def everything(held: HeldFrames) -> list[dict[str, Any]]:
    return messages(held.take(1 << 30))


def test_a_newer_score_of_a_post_supersedes_the_held_one_and_goes_last() -> None:
    held = held_with(pub(5, score("answer:1", 1)), pub(6, {"type": "answer"}))
    assert held.add(pub(7, score("answer:1", 2)).frame(JSON), pub(7, score("answer:1", 2)))
    got = everything(held)
    assert [m["offset"] for m in got] == [6, 7]


def test_the_first_frame_of_the_channel_after_a_dropped_offset_announces_it() -> None:
    held = held_with(pub(5, score("answer:1", 1)), pub(6, {"type": "answer"}))
    p7 = pub(7, score("answer:1", 2))
    held.add(p7.frame(JSON), p7)
    first, second = everything(held)
    assert first["conflated"] == 5  # the answer: offset 5 was superseded, not lost
    assert "conflated" not in second


def test_publications_without_a_key_are_never_dropped() -> None:
    held = held_with(*(pub(n, {"type": "answer", "n": n}) for n in range(1, 6)))
    assert len(held) == 5
    assert [m["offset"] for m in everything(held)] == [1, 2, 3, 4, 5]


def test_frames_that_are_not_publications_are_kept_in_order() -> None:
    held = HeldFrames(JSON)
    held.add(b"\x81\x02hb", None)
    p = pub(1, score("answer:1", 1))
    held.add(p.frame(JSON), p)
    assert held.take(1 << 30)[0] == b"\x81\x02hb"


def test_scores_of_different_posts_or_channels_do_not_supersede_each_other() -> None:
    held = held_with(
        pub(1, score("answer:1", 1)),
        pub(2, score("answer:2", 1)),
        pub(1, score("answer:1", 1), channel="question:8"),
    )
    assert len(held) == 3


def test_many_drops_stay_announced_across_compactions() -> None:
    held = HeldFrames(JSON)
    for offset in range(1, 1001):
        p = pub(offset, score(f"answer:{offset % 3}", offset))
        held.add(p.frame(JSON), p)
    assert len(held) == 3
    got = everything(held)
    assert [m["offset"] for m in got] == [998, 999, 1000]
    assert got[0]["conflated"] == 1
    assert held.nbytes == 0


def test_take_stops_at_the_budget_but_always_moves_on() -> None:
    held = held_with(*(pub(n, {"type": "answer", "n": n}) for n in range(1, 4)))
    one = held.take(1)
    assert len(one) == 1
    assert len(held) == 2


def test_a_drop_at_the_head_is_announced_by_a_later_take() -> None:
    held = held_with(pub(1, {"type": "answer"}), pub(2, score("answer:1", 1)))
    assert [m["offset"] for m in messages(held.take(1))] == [1]
    p3 = pub(3, score("answer:1", 2))
    held.add(p3.frame(JSON), p3)
    (last,) = everything(held)
    assert (last["offset"], last["conflated"]) == (3, 2)


def test_msgpack_frames_carry_the_field_too() -> None:
    import msgpack

    held = HeldFrames(WireFormat.MSGPACK)
    for offset, value in ((1, 1), (2, 2)):
        p = pub(offset, score("answer:1", value))
        held.add(p.frame(WireFormat.MSGPACK), p)
    (frame,) = held.take(1 << 30)
    message = msgpack.unpackb(frame[2:])
    assert (message["offset"], message["conflated"]) == (2, 1)


def test_a_heartbeat_is_held_ahead_of_the_backlog_and_never_dropped() -> None:
    held = held_with(pub(5, score("answer:1", 1)), pub(6, {"type": "answer"}))
    held.add_first(b"\x81\x0e" + b'{"type":"hb"}x')
    p7 = pub(7, score("answer:1", 2))
    held.add(p7.frame(JSON), p7)
    first, *rest = held.take(1)  # at least one frame: the heartbeat
    assert first.startswith(b"\x81\x0e")
    assert rest == []
    assert [m["offset"] for m in everything(held)] == [6, 7]
