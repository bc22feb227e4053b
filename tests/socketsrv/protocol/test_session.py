"""socketsrv/protocol/session.py: one connection's protocol state, driven by a fake clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from herald_contract.channels import parse_channel
from herald_contract.envelope import StreamPosition
from socketsrv.errors import WrongState
from socketsrv.protocol.auth import TokenVerifier
from socketsrv.protocol.budget import AddressBudget, AddressLimits
from socketsrv.protocol.codes import CloseCode, ErrorCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import (
    PROTOCOL_VERSION,
    CloseWith,
    Effect,
    Limits,
    Recovery,
    Send,
    Session,
    SessionState,
    StartSubscribe,
    StopSubscription,
)
from tests.support.raw_ws import parse_server_frame
from tests.support.tokens import SignToken

T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Client:
    """A session plus the clock it is driven with; ``send`` encodes like a browser would."""

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        verifier: TokenVerifier | None = None,
        wire: WireFormat = WireFormat.JSON,
        address: AddressBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.wire = wire
        self.session = Session(
            client_id="c-1",
            wire=wire,
            limits=limits or Limits(),
            verifier=verifier,
            now=self.clock.now,
            address=address,
        )

    def send(self, **fields: Any) -> list[Effect]:
        if self.wire is WireFormat.JSON:
            return self.session.receive(json.dumps(fields), self.clock.now)
        return self.session.receive(msgpack.packb(fields), self.clock.now)

    def connect(self, token: str | None = None, request_id: int = 1) -> list[Effect]:
        return self.send(op="connect", id=request_id, token=token)

    def subscribe(self, channel: str, request_id: int, **fields: Any) -> list[Effect]:
        return self.send(op="subscribe", id=request_id, channel=channel, **fields)


def message(frame: bytes, wire: WireFormat = WireFormat.JSON) -> Any:
    """The message in one complete server frame (frame validity is test_frames.py's job)."""
    _, payload = parse_server_frame(frame)
    if wire is WireFormat.JSON:
        return json.loads(payload)
    return msgpack.unpackb(payload)


def assert_error(
    effects: list[Effect],
    code: ErrorCode,
    request_id: int | None,
    wire: WireFormat = WireFormat.JSON,
) -> dict[str, Any]:
    assert len(effects) == 1, effects
    (effect,) = effects
    assert isinstance(effect, Send), effect
    assert effect.error is code
    sent = message(effect.frame, wire)
    assert sent["type"] == "error"
    assert (sent["code"], sent["id"]) == (int(code), request_id)
    return dict(sent)


def assert_reply(
    effects: list[Effect], request_id: int, wire: WireFormat = WireFormat.JSON
) -> dict[str, Any]:
    """The result of the one reply in *effects*."""
    sends = [effect for effect in effects if isinstance(effect, Send)]
    assert len(sends) == 1, effects
    assert sends[0].error is None
    sent = message(sends[0].frame, wire)
    assert (sent["type"], sent["id"]) == ("reply", request_id)
    return dict(sent["result"])


def assert_closed(effects: list[Effect], code: CloseCode) -> None:
    assert effects == [CloseWith(code)]


def assert_subscribing(effects: list[Effect], request_id: int, channel: str) -> StartSubscribe:
    assert len(effects) == 1, effects
    (effect,) = effects
    assert isinstance(effect, StartSubscribe), effect
    assert (effect.request_id, effect.channel.name) == (request_id, channel)
    return effect


@pytest.fixture
def anonymous() -> Client:
    client = Client()
    assert_reply(client.connect(), 1)
    return client


@pytest.fixture
def user_42(verifier: TokenVerifier, sign_token: SignToken) -> Client:
    client = Client(verifier=verifier)
    assert_reply(client.connect(sign_token(sub="42", exp=T0 + 600)), 1)
    return client


# connect


def test_an_anonymous_connect_is_answered_with_the_session_settings() -> None:
    client = Client()
    result = assert_reply(client.connect(), 1)
    assert result == {
        "version": PROTOCOL_VERSION,
        "client": "c-1",
        "user": None,
        "expires_at": None,
        "ping_interval_ms": 25_000,
        "pong_timeout_ms": 10_000,
        "commands_per_s": 20.0,
        "commands_burst": 50,
        "max_subscriptions": 128,
    }
    assert client.session.state is SessionState.CONNECTED
    assert client.session.user_id is None


def test_a_connect_with_a_valid_eddsa_token_authenticates_the_user(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    client = Client(verifier=verifier)
    result = assert_reply(client.connect(sign_token(sub="42", exp=T0 + 600), request_id=9), 9)
    assert (result["user"], result["expires_at"]) == ("42", T0 + 600)
    assert client.session.user_id == "42"
    assert client.session.expires_at == T0 + 600


def test_a_connect_with_an_expired_token_closes_with_token_expired(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    client = Client(verifier=verifier)
    assert_closed(client.connect(sign_token(sub="42", exp=T0 - 60)), CloseCode.TOKEN_EXPIRED)


def test_a_connect_with_a_bad_signature_closes_with_unauthorized(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    client = Client(verifier=verifier)
    header, claims, _ = sign_token(sub="42", exp=T0 + 600).split(".")
    assert_closed(client.connect(f"{header}.{claims}.AAAA"), CloseCode.UNAUTHORIZED)
    assert client.session.user_id is None


def test_an_anonymous_connect_closes_with_unauthorized_when_anonymous_is_disallowed(
    verifier: TokenVerifier,
) -> None:
    client = Client(verifier=verifier, limits=Limits(allow_anonymous=False))
    assert_closed(client.connect(), CloseCode.UNAUTHORIZED)


def test_a_token_is_still_accepted_when_anonymous_is_disallowed(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    client = Client(verifier=verifier, limits=Limits(allow_anonymous=False))
    assert assert_reply(client.connect(sign_token(sub="7", exp=T0 + 60)), 1)["user"] == "7"


def test_a_token_without_a_verifier_closes_with_unauthorized(sign_token: SignToken) -> None:
    client = Client(verifier=None)
    assert_closed(client.connect(sign_token(sub="42", exp=T0 + 600)), CloseCode.UNAUTHORIZED)


def test_a_second_connect_is_refused_and_keeps_the_first_identity(
    user_42: Client, sign_token: SignToken
) -> None:
    effects = user_42.connect(sign_token(sub="7", exp=T0 + 600), request_id=2)
    assert_error(effects, ErrorCode.ALREADY_CONNECTED, 2)
    assert user_42.session.user_id == "42"


def test_a_second_connect_with_a_bad_token_is_refused_without_closing(anonymous: Client) -> None:
    assert_error(anonymous.connect("not.a.token", request_id=2), ErrorCode.ALREADY_CONNECTED, 2)


@pytest.mark.parametrize(
    "command",
    [
        {"op": "subscribe", "id": 5, "channel": "question:1"},
        {"op": "unsubscribe", "id": 5, "channel": "question:1"},
        {"op": "ping", "id": 5},
    ],
    ids=["subscribe", "unsubscribe", "ping"],
)
def test_commands_before_connect_are_refused_as_not_connected(command: dict[str, Any]) -> None:
    client = Client()
    assert_error(client.send(**command), ErrorCode.NOT_CONNECTED, 5)
    assert client.session.state is SessionState.AWAITING_CONNECT
    assert client.session.subscriptions == set()


def test_a_pong_before_connect_is_accepted_silently() -> None:
    assert Client().send(op="pong") == []


def test_the_session_works_the_same_over_msgpack() -> None:
    client = Client(wire=WireFormat.MSGPACK)
    assert assert_reply(client.connect(), 1, WireFormat.MSGPACK)["version"] == PROTOCOL_VERSION
    assert_subscribing(client.subscribe("question:1", 2), 2, "question:1")
    assert_error(client.send(op="nope", id=3), ErrorCode.UNKNOWN_COMMAND, 3, WireFormat.MSGPACK)


# Bad input keeps the connection open


def test_malformed_input_gets_a_bad_request_and_the_session_goes_on(anonymous: Client) -> None:
    effects = anonymous.session.receive("{not json", anonymous.clock.now)
    sent = assert_error(effects, ErrorCode.BAD_REQUEST, None)
    assert sent["message"] == "bad request: malformed JSON"
    assert assert_reply(anonymous.send(op="ping", id=2), 2) == {}


def test_an_unknown_op_gets_unknown_command_with_its_id(anonymous: Client) -> None:
    assert_error(anonymous.send(op="publish", id=4), ErrorCode.UNKNOWN_COMMAND, 4)


def test_an_invalid_channel_gets_invalid_channel_with_its_id(anonymous: Client) -> None:
    sent = assert_error(anonymous.subscribe("tag:Python", 4), ErrorCode.INVALID_CHANNEL, 4)
    assert sent["message"].startswith("invalid channel: ")


# subscribe and unsubscribe


def test_a_subscribe_to_a_public_channel_starts_a_bus_subscription(anonymous: Client) -> None:
    start = assert_subscribing(anonymous.subscribe("question:7", 2), 2, "question:7")
    assert start.since is None
    assert anonymous.session.subscriptions == {"question:7"}


def test_a_subscribe_with_since_passes_the_position_on(anonymous: Client) -> None:
    effects = anonymous.subscribe("tag:c++", 2, since={"epoch": "e1", "offset": 5})
    assert assert_subscribing(effects, 2, "tag:c++").since == StreamPosition("e1", 5)


def test_the_subscribe_reply_carries_the_position_and_the_recovery(anonymous: Client) -> None:
    anonymous.subscribe("question:7", 2)
    reply = anonymous.session.subscribed(2, StreamPosition("e1", 12), Recovery.RECOVERED)
    assert assert_reply([reply], 2) == {"epoch": "e1", "offset": 12, "recovery": "recovered"}


def test_a_subscribe_to_another_users_channel_is_permission_denied(user_42: Client) -> None:
    assert_error(user_42.subscribe("user:43", 2), ErrorCode.PERMISSION_DENIED, 2)
    assert user_42.session.subscriptions == set()


def test_an_anonymous_subscribe_to_a_user_channel_is_permission_denied(anonymous: Client) -> None:
    assert_error(anonymous.subscribe("user:42", 2), ErrorCode.PERMISSION_DENIED, 2)


def test_a_user_may_subscribe_to_their_own_channel(user_42: Client) -> None:
    assert_subscribing(user_42.subscribe("user:42", 2), 2, "user:42")


def test_a_double_subscribe_is_already_subscribed(anonymous: Client) -> None:
    anonymous.subscribe("question:7", 2)
    assert_error(anonymous.subscribe("question:7", 3), ErrorCode.ALREADY_SUBSCRIBED, 3)
    anonymous.session.subscribed(2, StreamPosition("e1", 0), Recovery.NONE)
    assert_error(anonymous.subscribe("question:7", 4), ErrorCode.ALREADY_SUBSCRIBED, 4)


def test_an_unsubscribe_stops_the_subscription_and_replies(anonymous: Client) -> None:
    anonymous.subscribe("question:7", 2)
    effects = anonymous.send(op="unsubscribe", id=3, channel="question:7")
    assert effects[0] == StopSubscription(parse_channel("question:7"))
    assert assert_reply(effects, 3) == {}
    assert anonymous.session.subscriptions == set()
    assert_subscribing(anonymous.subscribe("question:7", 4), 4, "question:7")


def test_an_unsubscribe_from_an_unknown_channel_is_not_subscribed(anonymous: Client) -> None:
    effects = anonymous.send(op="unsubscribe", id=3, channel="question:7")
    assert_error(effects, ErrorCode.NOT_SUBSCRIBED, 3)


def test_the_subscription_limit_counts_pending_subscriptions() -> None:
    client = Client(limits=Limits(max_subscriptions=3))
    client.connect()
    for n in range(1, 4):
        assert_subscribing(client.subscribe(f"question:{n}", n + 1), n + 1, f"question:{n}")
    assert_error(client.subscribe("question:4", 9), ErrorCode.TOO_MANY_SUBSCRIPTIONS, 9)
    client.send(op="unsubscribe", id=10, channel="question:1")
    assert_subscribing(client.subscribe("question:4", 11), 11, "question:4")


def test_the_default_subscription_limit_is_128() -> None:
    client = Client()
    client.connect()
    for n in range(1, 129):
        client.clock.advance(1)  # stay inside the rate limit
        assert_subscribing(client.subscribe(f"question:{n}", n + 1), n + 1, f"question:{n}")
    client.clock.advance(1)
    assert_error(client.subscribe("question:129", 200), ErrorCode.TOO_MANY_SUBSCRIPTIONS, 200)


def test_a_failed_subscribe_frees_its_slot(anonymous: Client) -> None:
    anonymous.subscribe("question:7", 2)
    failed = anonymous.session.subscribe_failed(
        2, parse_channel("question:7"), ErrorCode.UNAVAILABLE
    )
    assert_error([failed], ErrorCode.UNAVAILABLE, 2)
    assert anonymous.session.subscriptions == set()
    assert_subscribing(anonymous.subscribe("question:7", 3), 3, "question:7")


# The rate limit


def test_a_burst_of_50_commands_passes_and_the_51st_is_refused(anonymous: Client) -> None:
    # connect took one token of the burst
    for n in range(2, 51):
        assert_reply(anonymous.send(op="ping", id=n), n)
    assert_error(anonymous.send(op="ping", id=51), ErrorCode.TOO_MANY_REQUESTS, 51)


def test_a_refused_command_is_not_executed(anonymous: Client) -> None:
    for n in range(2, 51):
        anonymous.send(op="ping", id=n)
    effects = anonymous.subscribe("question:7", 51)
    assert_error(effects, ErrorCode.TOO_MANY_REQUESTS, 51)
    assert anonymous.session.subscriptions == set()


def test_fifty_refusals_in_a_row_close_the_connection_as_a_flood(anonymous: Client) -> None:
    for n in range(2, 51):
        anonymous.send(op="ping", id=n)
    for refusal in range(1, 50):
        assert_error(
            anonymous.send(op="ping", id=100 + refusal), ErrorCode.TOO_MANY_REQUESTS, 100 + refusal
        )
    assert_closed(anonymous.send(op="ping", id=150), CloseCode.FLOOD)


def test_an_accepted_command_resets_the_refusal_count(anonymous: Client) -> None:
    for n in range(2, 51):
        anonymous.send(op="ping", id=n)
    for refusal in range(1, 50):
        anonymous.send(op="ping", id=100 + refusal)
    anonymous.clock.advance(0.06)  # 1.2 tokens at 20/s
    assert_reply(anonymous.send(op="ping", id=200), 200)
    for refusal in range(1, 50):
        assert_error(
            anonymous.send(op="ping", id=300 + refusal), ErrorCode.TOO_MANY_REQUESTS, 300 + refusal
        )
    assert_closed(anonymous.send(op="ping", id=400), CloseCode.FLOOD)


def test_the_bucket_refills_at_commands_per_s(anonymous: Client) -> None:
    for n in range(2, 51):
        anonymous.send(op="ping", id=n)
    anonymous.clock.advance(1.0)
    for n in range(100, 120):
        assert_reply(anonymous.send(op="ping", id=n), n)
    assert_error(anonymous.send(op="ping", id=120), ErrorCode.TOO_MANY_REQUESTS, 120)


def test_the_bucket_never_holds_more_than_the_burst(anonymous: Client) -> None:
    anonymous.clock.advance(3600)
    for n in range(2, 52):
        assert_reply(anonymous.send(op="ping", id=n), n)
    assert_error(anonymous.send(op="ping", id=52), ErrorCode.TOO_MANY_REQUESTS, 52)


def test_every_message_counts_against_the_rate_limit_pongs_and_garbage_included() -> None:
    client = Client(limits=Limits(commands_burst=3, commands_per_s=1))
    client.connect()
    client.send(op="pong")
    client.session.receive("garbage", client.clock.now)
    assert_error(client.send(op="ping", id=2), ErrorCode.TOO_MANY_REQUESTS, 2)


def test_a_clock_going_backwards_does_not_refill_the_bucket() -> None:
    client = Client(limits=Limits(commands_burst=1, commands_per_s=1))
    client.connect()
    client.clock.advance(-10)
    assert_error(client.send(op="ping", id=2), ErrorCode.TOO_MANY_REQUESTS, 2)


# Deadlines


def test_no_connect_within_connect_timeout_closes_with_connect_timeout() -> None:
    client = Client()
    assert client.session.deadline_passed(client.clock.advance(10.0)) is None
    assert client.session.deadline_passed(client.clock.advance(0.001)) is CloseCode.CONNECT_TIMEOUT


def test_a_pong_before_connect_does_not_extend_the_connect_timeout() -> None:
    client = Client()
    client.clock.advance(9)
    client.send(op="pong")
    assert client.session.deadline_passed(client.clock.advance(2)) is CloseCode.CONNECT_TIMEOUT


def send_heartbeat(client: Client) -> None:
    assert client.session.heartbeat_due()
    client.session.heartbeat_sent(client.clock.now)


def test_a_heartbeat_unanswered_for_longer_than_pong_timeout_closes_with_no_pong(
    anonymous: Client,
) -> None:
    send_heartbeat(anonymous)
    assert anonymous.session.deadline_passed(anonymous.clock.advance(10.0)) is None
    assert anonymous.session.deadline_passed(anonymous.clock.advance(0.001)) is CloseCode.NO_PONG


def test_a_heartbeat_delayed_behind_a_backlog_the_client_reads_gets_its_deadline_again(
    anonymous: Client,
) -> None:
    send_heartbeat(anonymous)
    session = anonymous.session
    assert session.deadline_passed(anonymous.clock.advance(10.5)) is CloseCode.NO_PONG
    session.heartbeat_delayed(anonymous.clock.now)  # the connection saw the client read on
    assert session.deadline_passed(anonymous.clock.advance(10.0)) is None
    assert not session.heartbeat_due()  # still unanswered: no second one
    assert session.deadline_passed(anonymous.clock.advance(0.001)) is CloseCode.NO_PONG


def test_only_an_unanswered_heartbeat_can_be_delayed(anonymous: Client) -> None:
    with pytest.raises(WrongState):
        anonymous.session.heartbeat_delayed(anonymous.clock.now)


def test_silence_without_a_heartbeat_to_answer_is_not_a_missed_pong(anonymous: Client) -> None:
    assert anonymous.session.deadline_passed(anonymous.clock.advance(3600)) is None


def test_no_second_heartbeat_is_due_while_one_is_unanswered(anonymous: Client) -> None:
    send_heartbeat(anonymous)
    anonymous.clock.advance(5)
    assert not anonymous.session.heartbeat_due()
    anonymous.send(op="pong")
    assert anonymous.session.heartbeat_due()


def test_no_heartbeat_is_due_before_connect() -> None:
    assert not Client().session.heartbeat_due()


def test_any_client_message_answers_a_heartbeat(anonymous: Client) -> None:
    send_heartbeat(anonymous)
    anonymous.clock.advance(1)
    anonymous.session.receive(b"\x00", anonymous.clock.now)  # even a bad one
    assert anonymous.session.deadline_passed(anonymous.clock.advance(30)) is None


def test_a_token_expiring_while_connected_closes_with_token_expired_after_the_leeway(
    user_42: Client,
) -> None:
    for _ in range(20):  # exp is 600 s away; the verifier's leeway is 5 s
        user_42.clock.advance(30)
        user_42.send(op="pong")
        assert user_42.session.deadline_passed(user_42.clock.now) is None
    assert user_42.session.deadline_passed(user_42.clock.advance(5)) is CloseCode.TOKEN_EXPIRED


def test_an_anonymous_session_has_no_token_to_expire(anonymous: Client) -> None:
    for _ in range(100):
        anonymous.clock.advance(30)
        anonymous.send(op="pong")
        assert anonymous.session.deadline_passed(anonymous.clock.now) is None


# Refreshing the token


def test_a_refresh_with_a_fresh_token_moves_the_expiry_and_keeps_the_connection(
    user_42: Client, sign_token: SignToken
) -> None:
    user_42.clock.advance(500)
    effects = user_42.send(op="refresh", id=5, token=sign_token(sub="42", exp=T0 + 1200))
    assert assert_reply(effects, 5) == {"expires_at": T0 + 1200}
    assert user_42.session.expires_at == T0 + 1200
    # Past the first token's expiry and leeway, the connection lives on.
    assert user_42.session.deadline_passed(user_42.clock.advance(200)) is None
    assert user_42.session.deadline_passed(user_42.clock.advance(505)) is CloseCode.TOKEN_EXPIRED


def test_a_refresh_with_another_users_token_closes_with_unauthorized(
    user_42: Client, sign_token: SignToken
) -> None:
    assert_closed(
        user_42.send(op="refresh", id=5, token=sign_token(sub="7", exp=T0 + 1200)),
        CloseCode.UNAUTHORIZED,
    )


def test_a_refresh_with_an_expired_token_closes_with_token_expired(
    user_42: Client, sign_token: SignToken
) -> None:
    assert_closed(
        user_42.send(op="refresh", id=5, token=sign_token(sub="42", exp=T0 - 60)),
        CloseCode.TOKEN_EXPIRED,
    )


def test_a_refresh_with_an_invalid_token_closes_with_unauthorized(user_42: Client) -> None:
    assert_closed(user_42.send(op="refresh", id=5, token="a.b.c"), CloseCode.UNAUTHORIZED)


def test_an_anonymous_connection_cannot_refresh_into_a_user(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    client = Client(verifier=verifier)
    assert_reply(client.connect(), 1)
    effects = client.send(op="refresh", id=2, token=sign_token(sub="42", exp=T0 + 600))
    assert_error(effects, ErrorCode.PERMISSION_DENIED, 2)
    assert client.session.user_id is None


@pytest.mark.parametrize("token", [None, 42, "x" * 4097])
def test_a_refresh_without_a_string_token_gets_400(user_42: Client, token: Any) -> None:
    assert_error(user_42.send(op="refresh", id=5, token=token), ErrorCode.BAD_REQUEST, 5)


def test_a_refresh_before_connect_gets_not_connected(
    verifier: TokenVerifier, sign_token: SignToken
) -> None:
    client = Client(verifier=verifier)
    effects = client.send(op="refresh", id=3, token=sign_token(sub="42", exp=T0 + 600))
    assert_error(effects, ErrorCode.NOT_CONNECTED, 3)


def test_a_closed_session_has_no_deadlines(anonymous: Client) -> None:
    anonymous.session.closed()
    assert anonymous.session.deadline_passed(anonymous.clock.advance(3600)) is None


# Closed


def test_a_closed_session_refuses_input_naming_its_state(anonymous: Client) -> None:
    anonymous.session.closed()
    assert anonymous.session.state is SessionState.CLOSED
    with pytest.raises(WrongState, match="cannot receive in state closed") as caught:
        anonymous.send(op="ping", id=2)
    assert caught.value.state is SessionState.CLOSED


def test_a_session_closed_before_connect_refuses_input_too() -> None:
    client = Client()
    client.session.closed()
    with pytest.raises(WrongState):
        client.connect()


def test_connections_of_one_address_spend_one_shared_command_budget() -> None:
    clock = Clock()
    shared = AddressBudget(AddressLimits(commands_per_s=1.0, commands_burst=3), clock.now)
    first, second = (Client(address=shared, clock=clock) for _ in range(2))
    assert_reply(first.connect(), 1)
    assert_reply(first.send(op="ping", id=2), 2)
    assert_reply(second.connect(), 1)
    # Three tokens spent by the address: the second connection's own bucket is full, the
    # address's is not.
    assert_error(second.send(op="ping", id=2), ErrorCode.TOO_MANY_REQUESTS, 2)
    clock.advance(1.0)
    assert_reply(second.send(op="ping", id=3), 3)


def test_a_refused_command_spends_neither_bucket() -> None:
    clock = Clock()
    shared = AddressBudget(AddressLimits(commands_per_s=1.0, commands_burst=1), clock.now)
    client = Client(
        limits=Limits(commands_burst=2, commands_per_s=0.001), address=shared, clock=clock
    )
    assert_reply(client.connect(), 1)  # the address's one token
    assert_error(client.send(op="ping", id=2), ErrorCode.TOO_MANY_REQUESTS, 2)
    clock.advance(1.0)
    # The connection's second token was not taken by the refusal.
    assert_reply(client.send(op="ping", id=3), 3)


def test_a_new_connection_of_a_flooding_address_starts_with_the_address_budget_spent() -> None:
    clock = Clock()
    shared = AddressBudget(AddressLimits(commands_per_s=0.001, commands_burst=50), clock.now)
    flooder = Client(address=shared, clock=clock)
    effects: list[Effect] = []
    for request_id in range(1, 200):
        effects = flooder.send(op="ping", id=request_id)
        if effects and isinstance(effects[0], CloseWith):
            break
    assert_closed(effects, CloseCode.FLOOD)
    again = Client(address=shared, clock=clock)
    assert_error(again.connect(), ErrorCode.TOO_MANY_REQUESTS, 1)


def test_replays_of_one_address_spend_one_shared_byte_budget() -> None:
    clock = Clock()
    shared = AddressBudget(
        AddressLimits(replay_bytes_per_s=100, replay_burst_bytes=1000), clock.now
    )
    first, second = (Client(address=shared, clock=clock) for _ in range(2))
    assert first.session.take_replay(800, clock.now)
    assert not second.session.take_replay(800, clock.now)
    assert second.session.take_replay(200, clock.now)
    clock.advance(8.0)
    assert second.session.take_replay(800, clock.now)


def test_a_flood_close_costs_the_address_a_second_of_new_connections() -> None:
    clock = Clock()
    limits = AddressLimits(connections_per_s=10.0, connections_burst=100)
    shared = AddressBudget(limits, clock.now)
    flooder = Client(
        limits=Limits(commands_burst=1, commands_per_s=0.001), address=shared, clock=clock
    )
    flooder.connect()
    effects: list[Effect] = []
    while not (effects and isinstance(effects[0], CloseWith)):
        effects = flooder.send(op="ping", id=2)
    assert_closed(effects, CloseCode.FLOOD)
    assert shared.connections.level(clock.now) == 100 - 10


def test_after_a_refused_replay_none_is_affordable_until_the_budget_could_cover_it() -> None:
    client = Client(limits=Limits(replay_bytes_per_s=100, replay_burst_bytes=1000))
    now = client.clock.now
    assert client.session.replay_affordable(now)
    assert client.session.take_replay(700, now)
    assert not client.session.take_replay(600, now)  # 300 left
    assert not client.session.replay_affordable(now)
    assert client.session.replay_affordable(client.clock.advance(3.0))  # 600 again
    assert client.session.take_replay(600, client.clock.now)
    assert client.session.replay_affordable(client.clock.now)


def test_a_replay_bigger_than_the_bucket_empties_it() -> None:
    client = Client(limits=Limits(replay_bytes_per_s=100, replay_burst_bytes=1000))
    now = client.clock.now
    assert not client.session.take_replay(5000, now)
    assert not client.session.replay_affordable(client.clock.advance(9.0))
    assert client.session.replay_affordable(client.clock.advance(1.0))
