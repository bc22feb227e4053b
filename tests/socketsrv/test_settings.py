"""socketsrv/settings.py and the command line of socketsrv/__main__.py (docs/configuration.md).

``Settings.from_env`` takes the environment as a mapping, so these tests pass plain dicts;
the command line runs as ``python -m socketsrv`` with an environment free of Herald settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from socketsrv.settings import Settings, SettingsError
from tests.support.tokens import TokenIssuer

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379/0"


def refused(env: dict[str, str]) -> SettingsError:
    """The error that building settings from *env* raises."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return caught.value


def assert_names(error: SettingsError, setting: str, variable: str | None = None) -> None:
    """*error* blames field *setting* and starts with the variable it came from."""
    variable = variable or "HERALD_" + setting.upper()
    assert error.name == setting
    assert (error.env, str(error).split(":")[0]) == (variable, variable), str(error)


# Values of every type


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_integers_floats_and_strings_are_read_from_herald_variables() -> None:
    settings = Settings.from_env(
        {
            "HERALD_HOST": "0.0.0.0",
            "HERALD_PORT": "9001",
            "HERALD_HISTORY_SIZE": "50",
            "HERALD_PING_INTERVAL_S": "2.5",
            "HERALD_HISTORY_TTL_S": "60",
            "HERALD_KEY_PREFIX": "qa",
            "HERALD_LOG_LEVEL": "DEBUG",
        }
    )
    assert (settings.host, settings.port, settings.history_size) == ("0.0.0.0", 9001, 50)
    assert (settings.ping_interval_s, settings.history_ttl_s) == (2.5, 60.0)
    assert isinstance(settings.history_ttl_s, float)
    assert (settings.key_prefix, settings.log_level) == ("qa", "DEBUG")


@pytest.mark.parametrize(
    ("word", "value"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("TRUE", True),
        ("No", False),
    ],
)
def test_booleans_accept_the_documented_words_in_any_case(word: str, value: bool) -> None:
    settings = Settings.from_env({"HERALD_COMPRESSION": word, "HERALD_ALLOW_ANONYMOUS": word})
    assert (settings.compression, settings.allow_anonymous) == (value,) * 2


def test_tuples_are_comma_separated_with_blanks_and_empty_parts_dropped() -> None:
    settings = Settings.from_env(
        {
            "HERALD_ORIGINS": " https://a.example, https://b.example,,",
            "HERALD_JWT_ALGORITHMS": "EdDSA,ES256",
        }
    )
    assert settings.origins == ("https://a.example", "https://b.example")
    assert settings.jwt_algorithms == ("EdDSA", "ES256")


def test_optional_strings_are_read_and_an_empty_value_leaves_them_unset() -> None:
    settings = Settings.from_env({"HERALD_JWT_AUDIENCE": "herald", "HERALD_JWT_ISSUER": ""})
    assert settings.jwt_audience == "herald"
    assert settings.jwt_issuer is None


def test_an_empty_variable_counts_as_unset() -> None:
    assert Settings.from_env({"HERALD_HOST": "", "HERALD_PORT": ""}) == Settings()


# Redis URL


def test_redis_url_is_read_when_herald_redis_url_is_absent() -> None:
    settings = Settings.from_env({"REDIS_URL": REDIS, "HERALD_WORKERS": "2"})
    assert (settings.redis_url, settings.workers) == (REDIS, 2)


def test_herald_redis_url_wins_over_redis_url() -> None:
    mine = "redis://herald.internal:6380/1"
    assert Settings.from_env({"REDIS_URL": REDIS, "HERALD_REDIS_URL": mine}).redis_url == mine


@pytest.mark.parametrize("variable", ["HERALD_REDIS_URL", "REDIS_URL"])
@pytest.mark.parametrize("url", ["127.0.0.1:6379", "localhost", "http://r:6379/0", "redis://"])
def test_a_redis_url_without_a_redis_scheme_is_refused_naming_its_variable(
    variable: str, url: str
) -> None:
    error = refused({variable: url})
    assert_names(error, "redis_url", variable)
    assert "redis://host:port/db" in str(error)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@r.example:6380/2", "unix:///run/r.sock"]
)
def test_redis_tls_and_unix_socket_urls_are_accepted(url: str) -> None:
    assert Settings.from_env({"HERALD_REDIS_URL": url}).redis_url == url


# Choices list their valid values


def test_a_boolean_that_is_not_a_word_lists_the_words() -> None:
    error = refused({"HERALD_COMPRESSION": "maybe"})
    assert str(error) == (
        "HERALD_COMPRESSION: cannot read 'maybe' as a boolean: "
        "use one of 1, 0, true, false, yes, no, on, off"
    )


def test_the_log_level_is_one_of_the_listed_levels_in_any_case() -> None:
    assert Settings.from_env({"HERALD_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    error = refused({"HERALD_LOG_LEVEL": "loud"})
    assert_names(error, "log_level")
    assert "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'" in str(error)


# The public key file


def test_the_jwt_public_key_is_read_from_the_pem_file_named(tmp_path: Path) -> None:
    pem = TokenIssuer().public_pem
    key_file = tmp_path / "jwt.pem"
    key_file.write_text(pem, encoding="ascii")
    settings = Settings.from_env({"HERALD_JWT_PUBLIC_KEY_FILE": str(key_file)})
    assert settings.jwt_public_key_pem == pem


def test_a_missing_public_key_file_is_refused_naming_jwt_public_key_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.pem"
    error = refused({"HERALD_JWT_PUBLIC_KEY_FILE": str(missing)})
    assert_names(error, "jwt_public_key_pem", "HERALD_JWT_PUBLIC_KEY_FILE")
    assert str(missing) in str(error)


# Values that cannot work


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        pytest.param({"HERALD_PORT": "abc"}, "port", id="port-not-a-number"),
        pytest.param({"HERALD_MAX_FRAME_BYTES": "1.5"}, "max_frame_bytes", id="int-as-float"),
        pytest.param({"HERALD_PING_INTERVAL_S": "soon"}, "ping_interval_s", id="float-as-word"),
        pytest.param({"HERALD_COMPRESSION": "maybe"}, "compression", id="bool-not-a-word"),
        pytest.param({"HERALD_WORKERS": "0"}, "workers", id="no-workers"),
        pytest.param({"HERALD_WORKERS": "2"}, "workers", id="workers-without-redis"),
        pytest.param({"HERALD_PING_INTERVAL_S": "0"}, "ping_interval_s", id="zero-interval"),
        pytest.param({"HERALD_SWEEP_INTERVAL_S": "-1"}, "sweep_interval_s", id="negative-sweep"),
        pytest.param({"HERALD_HISTORY_SIZE": "-1"}, "history_size", id="negative-history"),
        pytest.param({"HERALD_OUTBOX_MAX_BYTES": "0"}, "outbox_max_bytes", id="no-outbox"),
        pytest.param({"HERALD_PING_INTERVAL_S": "nan"}, "ping_interval_s", id="nan-interval"),
        pytest.param({"HERALD_HISTORY_TTL_S": "inf"}, "history_ttl_s", id="infinite-ttl"),
        pytest.param({"HERALD_PORT": "70000"}, "port", id="port-out-of-range"),
        pytest.param({"HERALD_DRAIN_BATCH_SIZE": "0"}, "drain_batch_size", id="empty-batches"),
        pytest.param({"HERALD_COMMANDS_PER_S": "0"}, "commands_per_s", id="no-commands"),
    ],
)
def test_a_value_that_cannot_work_is_refused_naming_the_setting(
    env: dict[str, str], setting: str
) -> None:
    assert_names(refused(env), setting)


@pytest.mark.parametrize("setting", ["host", "key_prefix"])
def test_an_empty_name_given_as_a_flag_is_refused(setting: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({}, **{setting: ""})
    assert str(caught.value).startswith(f"setting {setting}: ")


def test_a_value_that_cannot_be_read_is_quoted_in_the_message() -> None:
    assert "'abc'" in str(refused({"HERALD_PORT": "abc"}))


def test_settings_errors_are_value_errors() -> None:
    assert isinstance(refused({"HERALD_WORKERS": "0"}), ValueError)


# The command line


def test_the_command_line_refuses_several_workers_without_redis_with_exit_code_2() -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "REDIS_URL" and not name.startswith("HERALD_")
    }
    done = subprocess.run(
        [sys.executable, "-m", "socketsrv", "--workers", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=15,  # refused before anything listens; a server that started would hang here
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("herald-socketsrv: HERALD_WORKERS:"), done.stderr
    assert "Redis" in done.stderr
    assert done.stdout == ""


def test_a_command_line_flag_can_fix_what_the_environment_alone_cannot() -> None:
    settings = Settings.from_env({"HERALD_WORKERS": "4"}, redis_url=REDIS)
    assert (settings.workers, settings.redis_url) == (4, REDIS)


def test_a_public_key_file_that_is_not_text_is_refused_naming_jwt_public_key_file(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(b"\xff\xfe not a PEM")
    error = refused({"HERALD_JWT_PUBLIC_KEY_FILE": str(key_file)})
    assert_names(error, "jwt_public_key_pem", "HERALD_JWT_PUBLIC_KEY_FILE")
