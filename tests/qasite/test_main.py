"""The application's wiring (qasite/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from herald_contract.keys import KeyLayout
from qasite.core.keys import with_secrets
from qasite.core.settings import Environment, Settings
from tests.qasite.support import QA, qa_settings, running_qa
from tests.support.redis_server import RedisServer, free_port


async def test_production_has_no_dev_mailbox(tmp_path: Path) -> None:
    secrets = with_secrets(Settings(data_dir=tmp_path / "keys"))
    settings = qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}").replace(
        environment=Environment.PRODUCTION,
        access_token_secret=secrets.access_token_secret,
        socket_private_key_pem=secrets.socket_private_key_pem,
        socket_public_key_pem=secrets.socket_public_key_pem,
    )
    async with running_qa(settings) as qa:
        assert (await qa.client.get("/dev/mailbox")).status_code == 404
        assert (await qa.client.get("/healthz")).json() == {"status": "ok"}


async def test_without_a_bus_events_stay_in_the_outbox(tmp_path: Path) -> None:
    settings = qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}")
    async with running_qa(settings, record=False) as qa:
        assert qa.app.state.relay is None
        user = await qa.signup()
        await qa.ask(user, tags=["a", "b"])
        assert await qa.pending_events() == 3


async def test_the_openapi_schema_documents_every_route(qa: QA) -> None:
    schema = (await qa.client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert "/api/questions/{question_id}/vote" in paths
    assert "/api/socket-token" in paths
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path.startswith("/api/") and method != "get":
                assert "422" in operation["responses"], (method, path)


async def test_metrics_count_requests_by_route_and_relay_publications(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    await qa.client.get(f"/api/questions/{q['id']}")
    await qa.client.get("/api/questions/99999")
    await qa.settle()
    text = (await qa.client.get("/metrics")).text
    route = 'route="/api/questions/{question_id}"'
    assert f'herald_qa_http_requests_total{{method="GET",{route},status="200"}} 1.0' in text
    assert f'herald_qa_http_requests_total{{method="GET",{route},status="404"}} 1.0' in text
    assert "herald_qa_outbox_published_total 2.0" in text  # questions:new and tag:python
    [lag] = [line for line in text.splitlines() if line.startswith("herald_qa_outbox_lag_seconds ")]
    assert 0 <= float(lag.split()[1]) < 5


async def test_the_shared_history_size_bounds_what_the_q_and_a_core_publishes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    env = {"HERALD_REDIS_URL": redis_server.url, "HERALD_HISTORY_SIZE": "3"}
    settings = Settings.from_env(
        env, **_fast(qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}"))
    )
    async with running_qa(settings, record=False) as qa:
        user = await qa.signup()
        for n in range(5):
            await qa.ask(user, title=f"Question number {n}", tags=["bounded"])
        await qa.settle()
    client = Redis.from_url(redis_server.url)
    try:
        history = KeyLayout(settings.key_prefix).history("questions:new")
        assert await client.xlen(history) == 3
    finally:
        await client.aclose()


def _fast(settings: Settings) -> dict[str, Any]:
    """The test settings as overrides, minus what the environment must decide."""
    fields = (
        "data_dir",
        "database_url",
        "relay_poll_interval_s",
        "argon2_time_cost",
        "dev_mailbox",
    )
    return {name: getattr(settings, name) for name in (*fields, "argon2_memory_kib")}


async def test_readyz_answers_200_when_the_database_answers(qa: QA) -> None:
    r = await qa.client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


async def test_readyz_answers_200_when_the_relays_redis_answers_too(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}")
    async with running_qa(settings.replace(redis_url=redis_server.url), record=False) as qa:
        r = await qa.client.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})


async def test_readyz_answers_503_naming_redis_when_it_does_not_answer(tmp_path: Path) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    settings = qa_settings(tmp_path, f"sqlite:///{tmp_path / 'qa.sqlite3'}", redis_url=nobody)
    async with running_qa(settings, record=False) as qa:
        r = await qa.client.get("/readyz")
        assert (r.status_code, r.json()) == (
            503,
            {"status": "unready", "reason": "redis unreachable"},
        )
        assert (await qa.client.get("/healthz")).status_code == 200


async def test_readyz_answers_503_naming_the_database_when_it_does_not_answer(
    tmp_path: Path,
) -> None:
    nobody = f"postgresql://herald@127.0.0.1:{free_port()}/qa"
    settings = qa_settings(tmp_path, nobody, publish_timeout_s=2.0)
    async with running_qa(settings, migrate_on_start=False) as qa:
        r = await qa.client.get("/readyz")
        assert (r.status_code, r.json()) == (
            503,
            {"status": "unready", "reason": "database unreachable"},
        )
