"""launch/settings.py: both programs' settings from one environment, the ports as options."""

from __future__ import annotations

from launch.settings import build_settings, ports_taken
from tests.support.commands import port_in_use


def test_the_ports_given_as_options_move_the_socket_url_and_the_public_base_url() -> None:
    qa, fleet = build_settings({}, port="9080", socket_port="9000")
    assert (qa.port, fleet.port) == (9080, 9000)
    assert qa.socket_url == "ws://127.0.0.1:9000/ws"
    assert qa.public_base_url == "http://127.0.0.1:9080"


def test_the_port_variables_alone_move_them_too() -> None:
    qa, _ = build_settings({"HERALD_QA_PORT": "9180", "HERALD_PORT": "9100"})
    assert (qa.socket_url, qa.public_base_url) == (
        "ws://127.0.0.1:9100/ws",
        "http://127.0.0.1:9180",
    )


def test_explicit_urls_win_over_the_derived_ones() -> None:
    env = {
        "HERALD_QA_SOCKET_URL": "wss://ws.example/ws",
        "HERALD_QA_PUBLIC_BASE_URL": "https://qa.example",
    }
    qa, _ = build_settings(env, port="9080", socket_port="9000")
    assert (qa.socket_url, qa.public_base_url) == ("wss://ws.example/ws", "https://qa.example")


def test_a_wildcard_listening_address_is_shown_as_loopback() -> None:
    qa, _ = build_settings({"HERALD_HOST": "0.0.0.0", "HERALD_QA_HOST": "0.0.0.0"})
    assert (qa.socket_url, qa.public_base_url) == (
        "ws://127.0.0.1:8000/ws",
        "http://127.0.0.1:8080",
    )


def test_both_programs_read_the_one_redis_url_and_history_settings() -> None:
    env = {"REDIS_URL": "redis://r:6379/0", "HERALD_HISTORY_SIZE": "9"}
    qa, fleet = build_settings(env)
    assert qa.redis_url == fleet.redis_url == "redis://r:6379/0"
    assert qa.history_settings() == fleet.history_settings()
    assert qa.history_size == 9


def test_a_port_in_use_is_named_with_its_variable_and_option() -> None:
    with port_in_use() as port:
        qa, fleet = build_settings({}, port=str(port), socket_port="0")
        assert ports_taken(qa, fleet) == (
            f"cannot listen on 127.0.0.1:{port} (HERALD_QA_PORT / --port): Address already in use"
        )
    assert ports_taken(*build_settings({}, port=str(port), socket_port="0")) is None
