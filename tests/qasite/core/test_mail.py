"""Outgoing mail (qasite/core/mail.py): SMTP when configured, else the dev mailbox."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from qasite.core.mail import Mail, Mailer
from qasite.core.settings import Settings
from tests.support.redis_server import free_port


class FakeSmtpServer:
    """Just enough of RFC 5321 for smtplib: records each message's DATA."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake ESMTP\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 fake\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append(data.decode())
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


async def test_with_an_smtp_host_the_mail_goes_over_smtp(tmp_path: Path) -> None:
    fake = FakeSmtpServer()
    port = free_port()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port)
    async with server:
        settings = Settings(
            data_dir=tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            mail_from="qa@example.org",
        )
        mailer = Mailer(settings)
        await mailer.send(Mail(to="ada@example.org", subject="Verify", body="the link"))
    [message] = fake.messages
    assert "To: ada@example.org" in message
    assert "From: qa@example.org" in message
    assert "the link" in message
    assert list(mailer.mailbox) == []


async def test_an_unreachable_smtp_server_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=free_port())
    mailer = Mailer(settings)
    with caplog.at_level(logging.WARNING, logger="qasite.core.mail"):
        await mailer.send(Mail(to="a@b.org", subject="s", body="b"))
    [record] = [r for r in caplog.records if r.name == "qasite.core.mail"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("mail to a@b.org not sent: ")
    assert list(mailer.mailbox) == []


async def test_without_smtp_the_mail_lands_in_the_dev_mailbox(tmp_path: Path) -> None:
    mailer = Mailer(Settings(data_dir=tmp_path, dev_mailbox=True))
    await mailer.send(Mail(to="a@b.org", subject="s", body="b", link="http://x"))
    assert [m.link for m in mailer.mailbox] == ["http://x"]
