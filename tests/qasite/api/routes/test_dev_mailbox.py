"""The development mailbox (qasite/api/routes/dev.py, qasite/core/mail.py): off unless enabled,
and then only for loopback clients (issue 11, item 10: on the default settings anyone could
read every user's verification link at /dev/mailbox)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from qasite.core.keys import with_secrets
from qasite.core.settings import Environment, Settings
from tests.qasite.support import QA, qa_settings, running_qa

ACCOUNT = {"email": "ada@example.org", "password": "long enough"}


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'qa.sqlite3'}"


def refused(qa: QA, reason: str) -> float:
    value = qa.app.state.metrics.registry.get_sample_value(
        "herald_qa_dev_mailbox_refused_total", {"reason": reason}
    )
    return float(value or 0.0)


def test_the_mailbox_is_off_unless_set() -> None:
    assert Settings().dev_mailbox is None
    assert not Settings().serves_dev_mailbox
    assert Settings.from_env({"HERALD_QA_DEV_MAILBOX": "true"}).serves_dev_mailbox
    assert not Settings.from_env({"HERALD_QA_DEV_MAILBOX": "0"}).serves_dev_mailbox


async def test_on_the_default_settings_there_is_no_mailbox_and_no_mail_is_kept(
    tmp_path: Path,
) -> None:
    settings = qa_settings(tmp_path, sqlite(tmp_path), dev_mailbox=None)
    async with running_qa(settings) as qa:
        assert (await qa.client.post("/api/auth/register", json=ACCOUNT)).is_success
        r = await qa.client.get("/dev/mailbox")
        assert r.status_code == 404
        assert "ada@example.org" not in r.text
        assert list(qa.context.mailer.mailbox) == []
        assert refused(qa, "off") == 1


async def test_enabled_the_mailbox_answers_loopback_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="qasite.core.mail"):
        async with running_qa(qa_settings(tmp_path, sqlite(tmp_path))) as qa:
            assert (await qa.client.post("/api/auth/register", json=ACCOUNT)).is_success
            r = await qa.client.get("/dev/mailbox")
            assert r.status_code == 200
            assert r.json()[0]["to"] == "ada@example.org"
    assert any("development mailbox on" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("address", ["203.0.113.7", "10.0.0.2", "2001:db8::1"])
async def test_enabled_the_mailbox_is_refused_to_other_addresses(
    tmp_path: Path, address: str
) -> None:
    async with running_qa(qa_settings(tmp_path, sqlite(tmp_path))) as qa:
        assert (await qa.client.post("/api/auth/register", json=ACCOUNT)).is_success
        transport = httpx.ASGITransport(app=qa.app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as remote:
            r = await remote.get("/dev/mailbox")
        assert r.status_code == 404
        assert "ada@example.org" not in r.text
        assert refused(qa, "not_loopback") == 1


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.7"},
        {"Forwarded": "for=203.0.113.7"},
        {"X-Real-IP": "203.0.113.7"},
    ],
)
async def test_a_request_relayed_by_a_local_proxy_is_refused(
    tmp_path: Path, header: dict[str, str]
) -> None:
    async with running_qa(qa_settings(tmp_path, sqlite(tmp_path))) as qa:
        assert (await qa.client.post("/api/auth/register", json=ACCOUNT)).is_success
        r = await qa.client.get("/dev/mailbox", headers=header)
        assert r.status_code == 404
        assert "ada@example.org" not in r.text


async def test_production_never_serves_the_mailbox_even_when_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = with_secrets(Settings(data_dir=tmp_path / "keys"))
    settings = qa_settings(tmp_path, sqlite(tmp_path)).replace(
        environment=Environment.PRODUCTION,
        access_token_secret=secrets.access_token_secret,
        socket_private_key_pem=secrets.socket_private_key_pem,
        socket_public_key_pem=secrets.socket_public_key_pem,
    )
    with caplog.at_level(logging.WARNING, logger="qasite.core.mail"):
        async with running_qa(settings) as qa:
            assert (await qa.client.post("/api/auth/register", json=ACCOUNT)).is_success
            assert (await qa.client.get("/dev/mailbox")).status_code == 404
            assert list(qa.context.mailer.mailbox) == []
    assert any("ignored" in r.getMessage() for r in caplog.records)
