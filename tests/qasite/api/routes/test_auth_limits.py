"""Login and registration limits (issue 11, item 4): qasite/api/routes/auth.py with
qasite/core/auth_limits.py, ratelimit.py and passwords.py.

Time is a fake clock handed to the limits (no sleeping); the per-address tests give each
client its own ASGI peer address. The Redis test runs the same limits on a real redis-server
shared by two applications, as two Q&A workers would share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from qasite.api.routes.auth import auth_limits_for
from qasite.core.auth_limits import AuthLimits, address_key
from qasite.core.context import QAContext
from qasite.core.ratelimit import MemoryWindows, Record, RedisWindows
from qasite.core.settings import Settings
from tests.qasite.support import QA, error_of, running_qa, wait_until
from tests.support.redis_server import RedisServer

PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def fake_clock_limits(qa: QA, clock: FakeClock) -> AuthLimits:
    """Swap the app's limits for the same ones on *clock* (its windows start empty)."""
    limits: AuthLimits = qa.app.state.auth_limits
    limits.clock = clock
    return limits


@asynccontextmanager
async def from_address(qa: QA, host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of *qa* whose requests come from *host* (the ASGI peer address)."""
    transport = httpx.ASGITransport(app=qa.app, client=(host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://qa.test") as client:
        yield client


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


def context_of(qa: QA) -> QAContext:
    context: QAContext = qa.app.state.qa
    return context


def refused_count(qa: QA, reason: str) -> float:
    value = qa.app.state.metrics.registry.get_sample_value(
        "herald_qa_auth_refused_total", {"reason": reason}
    )
    return float(value or 0.0)


async def test_thirty_wrong_passwords_lock_the_account_the_right_one_too_until_the_window_passes(
    qa: QA,
) -> None:
    settings = context_of(qa).settings
    assert (settings.auth_account_attempts, settings.auth_window_s) == (10, 900.0)
    clock = FakeClock()
    fake_clock_limits(qa, clock)
    user = await qa.signup()
    statuses = []
    for _ in range(30):
        r = await login(qa.client, user.email, "wrong password")
        statuses.append(r.status_code)
        clock.now += 1
    assert statuses == [401] * 10 + [429] * 20
    refused = await login(qa.client, user.email, PASSWORD)
    assert refused.status_code == 429
    assert error_of(refused)["reason"] == "too_many_attempts"
    # The first failure (at t0) leaves the window at t0 + 900; now is t0 + 30.
    assert refused.headers["retry-after"] == "870"
    assert refused_count(qa, "account_limit") == 21
    clock.now += 869
    assert (await login(qa.client, user.email, PASSWORD)).status_code == 429
    clock.now += 1
    assert (await login(qa.client, user.email, PASSWORD)).status_code == 200


async def test_an_account_locked_by_failures_does_not_lock_another_account(qa: QA) -> None:
    fake_clock_limits(qa, FakeClock())
    victim, other = await qa.signup(), await qa.signup()
    for _ in range(10):
        assert (await login(qa.client, victim.email, "wrong password")).status_code == 401
    assert (await login(qa.client, victim.email, PASSWORD)).status_code == 429
    assert (await login(qa.client, other.email, PASSWORD)).status_code == 200


async def test_one_address_trying_many_accounts_is_refused_past_its_limit(qa: QA) -> None:
    clock = FakeClock()
    limits = fake_clock_limits(qa, clock)
    users = [await qa.signup() for _ in range(3)]
    limits.address_attempts = 12
    async with from_address(qa, "203.0.113.7") as attacker, from_address(qa, "::1") as local:
        statuses = [
            (await login(attacker, f"guess{i}@example.org", "wrong password")).status_code
            for i in range(11)
        ]
        assert statuses == [401] * 11  # unknown emails: never an account's lockout
        assert (await login(attacker, users[0].email, "wrong password")).status_code == 401
        refused = await login(attacker, users[1].email, PASSWORD)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "900"
        assert "your address" in error_of(refused)["message"]
        # Registrations from that address count against the same limit.
        body = {"email": "new@example.org", "password": PASSWORD}
        assert (await attacker.post("/api/auth/register", json=body)).status_code == 429
        # Another address is not limited by it.
        assert (await login(local, users[1].email, PASSWORD)).status_code == 200
        assert refused_count(qa, "address_limit") == 2
        clock.now += 900
        assert (await login(attacker, users[1].email, PASSWORD)).status_code == 200


async def test_registering_a_taken_email_answers_exactly_like_a_new_one(qa: QA) -> None:
    fake_clock_limits(qa, FakeClock())
    await qa.signup(email="taken@example.org")
    taken = await qa.client.post(
        "/api/auth/register", json={"email": "TAKEN@example.org", "password": "another one"}
    )
    new = await qa.client.post(
        "/api/auth/register", json={"email": "fresh@example.org", "password": "another one"}
    )
    assert taken.status_code == new.status_code == 202
    assert taken.json() == {**new.json(), "email": "taken@example.org"}
    assert set(taken.headers) == set(new.headers)
    mails = (await qa.client.get("/dev/mailbox")).json()  # newest first
    notice = mails[1]
    link = mails[0]
    # The owner of the taken email hears of it, with no link; the new one gets its link.
    assert (notice["to"], notice["link"]) == ("taken@example.org", None)
    assert "already has one" in notice["body"]
    assert link["to"] == "fresh@example.org"
    assert link["link"].startswith("http://127.0.0.1:8080/api/auth/verify?token=")
    # The taken account keeps its password.
    assert (await login(qa.client, "taken@example.org", PASSWORD)).status_code == 200
    assert (await login(qa.client, "taken@example.org", "another one")).status_code == 401


async def test_registrations_of_one_email_are_limited_like_failed_logins(qa: QA) -> None:
    clock = FakeClock()
    fake_clock_limits(qa, clock)
    body = {"email": "spam-target@example.org", "password": PASSWORD}
    statuses = [
        (await qa.client.post("/api/auth/register", json=body)).status_code for _ in range(12)
    ]
    assert statuses == [202] * 10 + [429] * 2
    mails = [m for m in (await qa.client.get("/dev/mailbox")).json() if m["to"] == body["email"]]
    assert len(mails) == 10


async def test_a_login_past_the_hashing_cap_is_refused_503_after_a_bounded_wait(
    settings: Settings,
) -> None:
    one_slot = settings.replace(
        argon2_max_concurrency=1, argon2_queue_timeout_s=0.2, argon2_max_waiting=1
    )
    async with running_qa(one_slot, migrate_on_start=False) as qa:
        user = await qa.signup()
        passwords = context_of(qa).passwords
        async with passwords.slot():  # every slot taken (there is one), for as long as it takes
            waiting = asyncio.create_task(login(qa.client, user.email, PASSWORD))
            await wait_until(lambda: passwords.waiting == 1, "the login waits for the slot")
            # One more than argon2_max_waiting: refused at once.
            at_once = await login(qa.client, user.email, PASSWORD)
            assert at_once.status_code == 503
            assert error_of(at_once)["reason"] == "busy"
            assert at_once.headers["retry-after"] == "1"
            # The waiting one gives up after argon2_queue_timeout_s.
            timed_out = await waiting
            assert timed_out.status_code == 503
            assert "no slot freed in time" in error_of(timed_out)["message"]
        assert refused_count(qa, "argon2_busy") == 2
        # Slots free: the same login goes through, and the refusals were not failures.
        assert (await login(qa.client, user.email, PASSWORD)).status_code == 200


async def test_a_login_queued_for_a_hashing_slot_is_served_when_one_frees(
    settings: Settings,
) -> None:
    one_slot = settings.replace(argon2_max_concurrency=1, argon2_queue_timeout_s=60.0)
    async with running_qa(one_slot, migrate_on_start=False) as qa:
        user = await qa.signup()
        passwords = context_of(qa).passwords
        async with passwords.slot():
            queued = asyncio.create_task(login(qa.client, user.email, PASSWORD))
            await wait_until(lambda: passwords.waiting == 1, "the login waits for the slot")
            assert not queued.done()
        assert (await queued).status_code == 200
        assert refused_count(qa, "argon2_busy") == 0


async def test_a_login_waiting_for_a_hashing_slot_holds_no_database_lock(
    settings: Settings,
) -> None:
    one_slot = settings.replace(argon2_max_concurrency=1, argon2_queue_timeout_s=60.0)
    async with running_qa(one_slot, migrate_on_start=False) as qa:
        author, user = await qa.signup(), await qa.signup()
        passwords = context_of(qa).passwords
        async with passwords.slot():
            queued = asyncio.create_task(login(qa.client, user.email, PASSWORD))
            await wait_until(lambda: passwords.waiting == 1, "the login waits for the slot")
            # On SQLite a write transaction takes the database's one write lock: a login
            # holding it while it waits would stall every write of the site behind argon2.
            asked = await qa.ask(author)
            assert asked["id"] >= 1
        assert (await queued).status_code == 200


async def test_a_busy_refusal_does_not_count_as_a_failed_login(settings: Settings) -> None:
    no_queue = settings.replace(
        argon2_max_concurrency=1, argon2_max_waiting=0, auth_account_attempts=1
    )
    async with running_qa(no_queue, migrate_on_start=False) as qa:
        user = await qa.signup()
        async with context_of(qa).passwords.slot():
            assert (await login(qa.client, user.email, PASSWORD)).status_code == 503
        assert (await login(qa.client, user.email, PASSWORD)).status_code == 200


def test_ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key(None) == "unknown"


async def test_the_in_process_windows_keep_a_bounded_number_of_keys() -> None:
    windows = MemoryWindows(max_keys=100)
    for i in range(1000):
        verdict = await windows.attempt(
            f"k{i}", limit=5, window_s=60, now=float(i), record=Record.IF_ALLOWED
        )
        assert verdict.allowed
    assert len(windows) <= 100  # the expired are dropped past 100 keys


async def test_two_workers_on_one_redis_share_the_limits(
    tmp_path: Path, settings: Settings, redis_server: RedisServer
) -> None:
    shared = settings.replace(redis_url=redis_server.url, auth_account_attempts=3)
    clock = FakeClock()
    async with (
        running_qa(shared, migrate_on_start=False) as first,
        running_qa(shared, migrate_on_start=False) as second,
    ):
        for qa in (first, second):
            assert isinstance(fake_clock_limits(qa, clock).windows, RedisWindows)
        user = await first.signup()
        for qa in (first, second, first):
            assert (await login(qa.client, user.email, "wrong password")).status_code == 401
        refused = await login(second.client, user.email, PASSWORD)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "900"
        keys = redis_server.client().keys("herald:qa:limit:*")
        # The address, the email's registrations and its failed logins (email hashed).
        assert sorted(k.split(b":")[3] for k in keys) == [b"address", b"login", b"register"]
        assert not any(b"example.org" in key for key in keys)
        clock.now += 900
        assert (await login(first.client, user.email, PASSWORD)).status_code == 200


def test_the_limits_are_built_from_the_settings() -> None:
    limits = auth_limits_for(Settings(auth_account_attempts=4, auth_address_attempts=7))
    assert (limits.account_attempts, limits.address_attempts, limits.window_s) == (4, 7, 900)
    assert isinstance(limits.windows, MemoryWindows)
