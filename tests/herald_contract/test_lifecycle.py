"""herald_contract/lifecycle.py: the bus states and which transitions are allowed."""

from __future__ import annotations

import pytest

from herald_contract.errors import BusStateError, BusUnavailable, HeraldError
from herald_contract.lifecycle import BusLifecycle, BusState


def test_a_bus_goes_live_loses_its_connection_recovers_and_closes() -> None:
    lifecycle = BusLifecycle("test")
    seen = [lifecycle.state]
    for state in (BusState.LIVE, BusState.RECOVERING, BusState.LIVE, BusState.CLOSED):
        lifecycle.move(state, "test")
        seen.append(lifecycle.state)
    assert seen == [
        BusState.NEW,
        BusState.LIVE,
        BusState.RECOVERING,
        BusState.LIVE,
        BusState.CLOSED,
    ]


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ([], BusState.RECOVERING),
        ([BusState.LIVE], BusState.LIVE),
        ([BusState.CLOSED], BusState.LIVE),
        ([BusState.CLOSED], BusState.CLOSED),
    ],
)
def test_a_transition_outside_the_table_raises_naming_the_state(
    path: list[BusState], refused: BusState
) -> None:
    lifecycle = BusLifecycle("test")
    for state in path:
        lifecycle.move(state, "test")
    with pytest.raises(BusStateError) as caught:
        lifecycle.move(refused, "do this to")
    assert caught.value.state == lifecycle.state.value
    assert str(caught.value) == f"cannot do this to a bus that is {lifecycle.state.value}"
    assert isinstance(caught.value, HeraldError)


def test_calls_outside_the_wanted_states_find_the_bus_unavailable() -> None:
    lifecycle = BusLifecycle("memory")
    with pytest.raises(BusUnavailable, match="the memory bus is new"):
        lifecycle.require(BusState.LIVE)
    lifecycle.move(BusState.LIVE, "start")
    lifecycle.require(BusState.LIVE)
    assert lifecycle.live


def test_expecting_another_state_raises_naming_the_one_the_bus_is_in() -> None:
    lifecycle = BusLifecycle("test")
    lifecycle.expect(BusState.NEW, "start")
    lifecycle.move(BusState.LIVE, "start")
    with pytest.raises(BusStateError, match="cannot start a bus that is live"):
        lifecycle.expect(BusState.NEW, "start")
