"""Settings (qasite/core/settings.py) and start-up secrets (qasite/core/keys.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qasite.core.keys import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, public_key_of, with_secrets
from qasite.core.settings import Environment, Settings, SettingsError


def test_settings_come_from_herald_qa_variables_and_the_usual_urls(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("PEM", encoding="ascii")
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@db/qa",
            "REDIS_URL": "redis://r:6379/0",
            "HERALD_QA_PORT": "9000",
            "HERALD_QA_REQUIRE_VERIFIED_EMAIL": "no",
            "HERALD_QA_SOCKET_TOKEN_TTL_S": "60",
            "HERALD_QA_DATA_DIR": str(tmp_path),
            "HERALD_QA_SOCKET_PRIVATE_KEY_FILE": str(key),
        }
    )
    assert s.sqlalchemy_url == "postgresql+asyncpg://u@db/qa"
    assert s.redis_url == "redis://r:6379/0"
    assert (s.port, s.require_verified_email, s.socket_token_ttl_s) == (9000, False, 60.0)
    assert s.socket_private_key_pem == "PEM"
    assert s.attachments_path == tmp_path / "attachments"


def test_the_default_database_is_sqlite_in_the_data_directory() -> None:
    s = Settings(data_dir=Path("/srv/herald"))
    assert s.sqlalchemy_url == "sqlite+aiosqlite:////srv/herald/qa.sqlite3"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"HERALD_QA_PORT": "0"}, "port"),
        ({"HERALD_QA_PORT": "eighty"}, "port"),
        ({"HERALD_QA_ACCESS_TOKEN_TTL_S": "-1"}, "access_token_ttl_s"),
        ({"HERALD_QA_ACCESS_TOKEN_TTL_S": "inf"}, "access_token_ttl_s"),
        ({"HERALD_QA_REQUIRE_VERIFIED_EMAIL": "maybe"}, "require_verified_email"),
        ({"HERALD_QA_ENVIRONMENT": "production"}, "access_token_secret"),
        ({"HERALD_QA_SOCKET_PRIVATE_KEY_FILE": "/nonexistent"}, "socket_private_key_pem"),
    ],
)
def test_unusable_settings_are_refused_with_their_name(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert caught.value.name == name


def test_development_keys_are_generated_once_and_reused(tmp_path: Path) -> None:
    first = with_secrets(Settings(data_dir=tmp_path))
    second = with_secrets(Settings(data_dir=tmp_path))
    assert first.socket_private_key_pem == second.socket_private_key_pem
    assert first.access_token_secret == second.access_token_secret
    assert first.socket_public_key_pem == (tmp_path / PUBLIC_KEY_FILE).read_text()
    assert (tmp_path / PRIVATE_KEY_FILE).stat().st_mode & 0o077 == 0


def test_production_uses_the_configured_keys_and_writes_nothing(tmp_path: Path) -> None:
    private = with_secrets(Settings(data_dir=tmp_path / "dev")).socket_private_key_pem
    assert private is not None
    s = Settings(
        environment=Environment.PRODUCTION,
        data_dir=tmp_path / "prod",
        access_token_secret="s" * 40,
        socket_private_key_pem=private,
        socket_public_key_pem=public_key_of(private),
    )
    assert with_secrets(s) == s
    assert not (tmp_path / "prod").exists()


def test_herald_redis_url_alone_is_the_redis_url_of_the_q_and_a_core() -> None:
    url = "redis://shared.internal:6379/0"
    assert Settings.from_env({"HERALD_REDIS_URL": url}).redis_url == url


def test_the_q_and_a_core_reads_the_redis_url_by_its_own_name_first_then_the_shared_ones() -> None:
    own, shared, alias = "redis://own:1/0", "redis://shared:2/0", "redis://alias:3/0"
    env = {"HERALD_QA_REDIS_URL": own, "HERALD_REDIS_URL": shared, "REDIS_URL": alias}
    assert Settings.from_env(env).redis_url == own
    del env["HERALD_QA_REDIS_URL"]
    assert Settings.from_env(env).redis_url == shared
    del env["HERALD_REDIS_URL"]
    assert Settings.from_env(env).redis_url == alias


def test_history_retention_is_read_from_the_names_the_fleet_reads() -> None:
    s = Settings.from_env(
        {
            "HERALD_HISTORY_SIZE": "7",
            "HERALD_HISTORY_TTL_S": "60",
            "HERALD_META_TTL_S": "120",
            "HERALD_IDEMPOTENCY_TTL_S": "30",
            "HERALD_KEY_PREFIX": "qa",
        }
    )
    assert (s.history_size, s.history_ttl_s, s.meta_ttl_s, s.idempotency_ttl_s) == (7, 60, 120, 30)
    assert s.key_prefix == "qa"


def test_the_public_base_url_follows_the_port_unless_it_is_set() -> None:
    assert Settings.from_env({"HERALD_QA_PORT": "9000"}).public_base_url == "http://127.0.0.1:9000"
    explicit = {"HERALD_QA_PORT": "9000", "HERALD_QA_PUBLIC_BASE_URL": "https://qa.example"}
    assert Settings.from_env(explicit).public_base_url == "https://qa.example"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"HERALD_QA_ENVIRONMENT": "staging"},
            "HERALD_QA_ENVIRONMENT: 'staging' is not one of 'development' or 'production'",
        ),
        (
            {"HERALD_QA_ENVIRONMENT": "production"},
            "HERALD_QA_ACCESS_TOKEN_SECRET: must be configured in production",
        ),
        (
            {"HERALD_QA_SMTP_STARTTLS": "sometimes"},
            "HERALD_QA_SMTP_STARTTLS: cannot read 'sometimes' as a boolean: "
            "use one of 1, 0, true, false, yes, no, on, off",
        ),
        (
            {"DATABASE_URL": "", "REDIS_URL": "127.0.0.1:6379"},
            "REDIS_URL: '127.0.0.1:6379' is not a Redis URL: use redis://host:port/db, "
            "rediss:// (TLS) or unix:///path/to/socket",
        ),
    ],
)
def test_errors_name_the_variable_and_list_the_valid_values(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message
