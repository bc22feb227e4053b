"""herald_contract/config.py: the rules both programs' settings share, and the log format."""

from __future__ import annotations

import logging
import logging.config

import pytest

from herald_contract.config import (
    LOG_FORMAT,
    BusSettings,
    SettingsError,
    cannot_bind,
    uvicorn_log_config,
)
from herald_contract.history import HistorySettings
from tests.support.commands import port_in_use


def test_building_settings_directly_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_HISTORY_SIZE", "7")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    assert BusSettings() == BusSettings.from_env({})
    assert BusSettings().redis_url is None


def test_the_shared_settings_give_the_history_every_publication_is_made_with() -> None:
    settings = BusSettings.from_env(
        {"HERALD_HISTORY_SIZE": "7", "HERALD_HISTORY_TTL_S": "60", "HERALD_META_TTL_S": "600"}
    )
    assert settings.history_settings() == HistorySettings(7, 60.0, 600.0, 86400.0)


def test_settings_are_frozen() -> None:
    settings = BusSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.history_size = 3  # type: ignore[misc]


def test_replace_validates_like_building() -> None:
    with pytest.raises(SettingsError) as caught:
        BusSettings().replace(history_size=0)
    assert str(caught.value) == "setting history_size: must be greater than or equal to 1, not 0"


def test_a_port_in_use_cannot_be_bound_and_a_free_one_can() -> None:
    with port_in_use() as port:
        assert cannot_bind("127.0.0.1", port) == "Address already in use"
    assert cannot_bind("127.0.0.1", 0) is None


def test_uvicorn_logs_in_the_format_of_every_herald_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.config.dictConfig(uvicorn_log_config("INFO"))
    try:
        logging.getLogger("uvicorn.error").info("Started server process")
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    line = capsys.readouterr().err.strip()
    assert LOG_FORMAT.startswith("%(asctime)s %(levelname)s %(name)s")
    date, time, level, name, *message = line.split(" ")
    assert (level, name, " ".join(message)) == ("INFO", "uvicorn.error", "Started server process")
    assert len(date) == 10 and time[2] == ":"
