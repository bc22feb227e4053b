"""Redis AUTH and TLS for every Redis client of Herald (issue 11, item 14): the socket fleet's
bus, the Q&A core's relay, login limits and token deny list, and the publisher library, on a
real redis-server started with ``--requirepass`` (and, for ``rediss://``, TLS only, with a
certificate made here).

The password and the TLS options travel in the URL, the one setting each part reads
(``redis://:<password>@host:port/db``, ``rediss://...?ssl_ca_certs=<path>``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from publisher.publish import Publisher
from qasite.core.settings import Settings
from tests.qasite.support import qa_settings, running_qa
from tests.support.client import HeraldTestClient
from tests.support.redis_server import START_TIMEOUT_S, RedisServer, RedisServerError, free_port
from tests.support.waiting import eventually
from tests.support.worker import running_worker, ws_url

pytestmark = pytest.mark.redis

PASSWORD = "s3cret/with:odd@chars"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files in *directory*)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class SecuredRedis(RedisServer):
    """redis-server with ``--requirepass``; with *tls*, TLS only on :attr:`port`."""

    def __init__(self, workdir: Path, *, tls: bool) -> None:
        port = free_port()
        args: Sequence[str] = ("--requirepass", PASSWORD)
        self.ca_file: Path | None = None
        if tls:
            cert_file, key_file = self_signed(workdir / "tls")
            self.ca_file = cert_file
            args = (*args, "--port", "0", "--tls-port", str(port),
                    "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
                    "--tls-ca-cert-file", str(cert_file), "--tls-auth-clients", "no")  # fmt: skip
        super().__init__(workdir, port=port, extra_args=args)

    @property
    def url(self) -> str:
        return self.url_with(PASSWORD)

    def url_with(self, password: str) -> str:
        auth = f":{quote(password, safe='')}@"
        if self.ca_file is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={quote(str(self.ca_file))}"

    def client(self) -> redis.Redis:
        client = redis.Redis.from_url(self.url, socket_timeout=5.0)
        self._clients.append(client)
        return client

    def _wait_until_ready(self, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline and self.running:
                try:
                    if probe.ping():
                        return
                except (redis.RedisError, OSError):
                    time.sleep(0.02)
        finally:
            probe.close()
        self.kill()
        raise RedisServerError(f"redis-server did not start:\n{log.read_text()[-2000:]}")


@pytest.fixture(params=["password", "password_and_tls"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecuredRedis]:
    server = SecuredRedis(tmp_path / "redis", tls=request.param == "password_and_tls")
    try:
        server.start()
        yield server
    finally:
        server.close()


def settings_on(tmp_path: Path, redis_url: str) -> Settings:
    return qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}", redis_url=redis_url)


async def test_the_fleet_the_relay_and_the_publisher_work_through_auth(
    tmp_path: Path, secured: SecuredRedis
) -> None:
    anonymous = redis.Redis.from_url(secured.url_with(""), socket_timeout=2.0)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()  # the server does refuse clients without the password
    anonymous.close()
    async with running_worker(redis_url=secured.url) as worker:
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        try:
            await client.subscribe("questions:new")
            async with running_qa(settings_on(tmp_path, secured.url), record=False) as qa:
                assert (await qa.client.get("/readyz")).status_code == 200
                user = await qa.signup()  # login limits in Redis
                question = await qa.ask(user)  # the relay publishes to Redis
                await qa.settle()
                logout = await qa.client.post(
                    "/api/auth/logout",
                    json={"refresh_token": user.tokens["refresh_token"]},
                    headers=user.headers,
                )
                assert logout.status_code == 204  # the deny list writes to Redis
            async with Publisher(secured.url) as publisher:
                await publisher.publish("questions:new", {"from": "the publisher"})
            received = client.channels["questions:new"].received
            await eventually(lambda: len(received) >= 2, timeout_s=20.0)
            assert received[0][2]["id"] == question["id"]
            assert received[1][2] == {"from": "the publisher"}
        finally:
            await client.close()
    keys = secured.client().keys("herald:qa:*")
    assert {k.split(b":")[2] for k in keys} >= {b"limit", b"revoked"}


async def test_a_wrong_password_leaves_the_qa_core_unready_without_showing_it(
    tmp_path: Path, secured: SecuredRedis
) -> None:
    async with running_qa(settings_on(tmp_path, secured.url_with("wrong")), record=False) as qa:
        r = await qa.client.get("/readyz")
        assert r.status_code == 503
        assert "wrong" not in r.text and PASSWORD not in r.text


async def test_a_fleet_worker_with_a_wrong_password_waits_for_its_bus_and_logs_no_password(
    secured: SecuredRedis, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "NotThePassw0rd"
    async with running_worker(redis_url=secured.url_with(wrong), wait_for_bus=False) as worker:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):  # a bound, not a measurement: it never comes up
                await worker.bus_started()
    assert "NotThePassw0rd" not in caplog.text
