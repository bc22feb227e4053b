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
