"""socketsrv/recovery.py: what a subscribe from a position gets told.

The catch-up and the gap repair run inside the hub and are tested through it
(tests/socketsrv/test_hub.py: replays, publications during the read, repairs, lost streams).
"""

from __future__ import annotations

import pytest

from herald_contract.envelope import StreamPosition
from socketsrv.history import Recovered
from socketsrv.protocol.session import Recovery
from socketsrv.recovery import outcome

TOP = StreamPosition("e1", 10)


@pytest.mark.parametrize(
    ("since", "complete", "expected"),
    [
        pytest.param(None, True, (Recovery.NONE, 10), id="no-position-live-from-the-top"),
        pytest.param(StreamPosition("e1", 7), True, (Recovery.RECOVERED, 7), id="covered"),
        pytest.param(StreamPosition("e1", 7), False, (Recovery.FAILED, 10), id="not-covered"),
        pytest.param(StreamPosition("e0", 7), False, (Recovery.FAILED, 10), id="other-epoch"),
        pytest.param(StreamPosition("-", 0), True, (Recovery.RECOVERED, 0), id="saw-nothing"),
        pytest.param(StreamPosition("-", 3), False, (Recovery.FAILED, 10), id="unnamed-epoch"),
    ],
)
def test_the_outcome_and_the_offset_the_subscriber_already_has(
    since: StreamPosition | None, complete: bool, expected: tuple[Recovery, int]
) -> None:
    assert outcome(since, Recovered(TOP, complete, [])) == expected


def test_recovery_values_are_the_wire_texts_of_docs_protocol() -> None:
    assert [r.value for r in Recovery] == ["none", "recovered", "failed"]
