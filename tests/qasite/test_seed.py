"""Seed data (qasite/seed/): realistic, consistent, deterministic, silent; both DBs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text

from qasite.__main__ import main
from qasite.core.settings import Settings
from qasite.domain.rendering import render_markdown
from qasite.seed import SEED_PASSWORD, Generator, SeedPlan, Start, seed
from tests.qasite.support import QA, qa_settings, running_qa, truncate

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def plan(questions: int = 300, users: int = 40, **changes: Any) -> SeedPlan:
    return SeedPlan(questions=questions, users=users, now=NOW, batch_questions=64, **changes)


def rows_of(p: SeedPlan) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for batch in Generator(p, Start(), "hash").batches():
        for table, rows in batch.rows.items():
            out.setdefault(table, []).extend(rows)
    return out


async def scalar(qa: QA, sql: str) -> Any:
    async with qa.context.db.reads() as session:
        return await session.scalar(text(sql))


def test_the_same_seed_makes_the_same_rows_and_another_seed_other_rows() -> None:
    assert rows_of(plan(seed=3)) == rows_of(plan(seed=3))
    assert rows_of(plan(seed=3))["questions"] != rows_of(plan(seed=4))["questions"]


def test_tag_popularity_falls_off_like_a_zipf_law() -> None:
    rows = rows_of(plan(questions=2000, tags=100))
    uses = Counter(tag_id for _, tag_id in rows["question_tags"])
    ranked = [n for _, n in uses.most_common()]
    assert ranked[0] > 5 * ranked[19] > 0, ranked[:20]
    assert all(1 <= n <= 5 for n in Counter(q for q, _ in rows["question_tags"]).values())


def test_every_body_html_is_what_the_renderer_makes_of_its_markdown() -> None:
    rows = rows_of(plan(questions=200))
    for table in ("questions", "answers"):
        md_at = 3
        for row in rows[table]:
            assert render_markdown(row[md_at]) == row[md_at + 1]


def test_times_stay_in_the_span_and_come_after_their_post() -> None:
    rows = rows_of(plan(questions=500, days=30))
    created = {row[0]: row[10] for row in rows["questions"]}
    assert min(created.values()) >= NOW - dt.timedelta(days=30)
    assert list(created.values()) == sorted(created.values()), "ids in time order"
    for row in rows["answers"]:
        assert created[row[1]] <= row[8] <= NOW


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="users"):
        SeedPlan(questions=1, users=1)
    with pytest.raises(ValueError, match="means"):
        SeedPlan(questions=1, users=5, votes_mean=-1)


async def assert_consistent(qa: QA) -> None:
    checks = {
        "question scores": "SELECT count(*) FROM questions q WHERE score <> "
        "coalesce((SELECT sum(value) FROM votes v WHERE v.question_id = q.id), 0)",
        "answer scores": "SELECT count(*) FROM answers a WHERE score <> "
        "coalesce((SELECT sum(value) FROM votes v WHERE v.answer_id = a.id), 0)",
        "answer counts": "SELECT count(*) FROM questions q WHERE answer_count <> "
        "(SELECT count(*) FROM answers a WHERE a.question_id = q.id)",
        "accepted answers": "SELECT count(*) FROM questions q WHERE accepted_answer_id IS NOT "
        "NULL AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.id = q.accepted_answer_id "
        "AND a.question_id = q.id)",
        "votes on own questions": "SELECT count(*) FROM votes v JOIN questions q "
        "ON q.id = v.question_id WHERE v.user_id = q.author_id",
        "votes on own answers": "SELECT count(*) FROM votes v JOIN answers a "
        "ON a.id = v.answer_id WHERE v.user_id = a.author_id",
        "activity before an answer": "SELECT count(*) FROM questions q WHERE last_activity_at "
        "< (SELECT coalesce(max(created_at), q.created_at) FROM answers a "
        "WHERE a.question_id = q.id)",
        "outbox rows": "SELECT count(*) FROM outbox",
        "inbox items": "SELECT count(*) FROM inbox_items",
    }
    broken = {name: n for name, sql in checks.items() if (n := await scalar(qa, sql))}
    assert broken == {}


async def test_a_seed_is_consistent_and_publishes_nothing(qa: QA, settings: Settings) -> None:
    totals = await seed(settings, plan())
    assert totals["questions"] == 300
    assert totals["users"] == 40
    assert totals["answers"] > 100 and totals["votes"] > 300 and totals["comments"] > 100
    assert await scalar(qa, "SELECT count(*) FROM questions") == 300
    assert await scalar(qa, "SELECT count(*) FROM questions WHERE accepted_answer_id IS NOT NULL")
    await assert_consistent(qa)
    assert qa.sink.events == []


async def test_seeded_questions_are_searchable(qa: QA, settings: Settings) -> None:
    await seed(settings, plan())
    title = await scalar(qa, "SELECT title FROM questions WHERE id = 17")
    words = " ".join(w for w in title.rstrip("?").split() if len(w) > 3 and w.isalpha())
    r = await qa.client.get("/api/questions", params={"q": words, "limit": 100})
    assert r.status_code == 200, r.text
    assert 17 in [item["id"] for item in r.json()["items"]]
    r = await qa.client.get("/api/questions", params={"tag": "python", "sort": "votes"})
    assert r.json()["items"], "the most popular tag is on some question"


async def test_seeded_users_log_in_with_the_seed_password(qa: QA, settings: Settings) -> None:
    await seed(settings, plan(users=5, questions=3))
    login = {"email": "user3@seed.example", "password": SEED_PASSWORD}
    r = await qa.client.post("/api/auth/login", json=login)
    assert r.status_code == 200, r.text


async def test_a_second_seed_appends_and_the_service_keeps_numbering_after_it(
    qa: QA, settings: Settings
) -> None:
    await seed(settings, plan(questions=50, users=10))
    await seed(settings, plan(questions=50, users=10, seed=2))
    assert await scalar(qa, "SELECT count(*) FROM questions") == 100
    assert await scalar(qa, "SELECT count(DISTINCT name) FROM tags") == await scalar(
        qa, "SELECT count(*) FROM tags"
    )
    await assert_consistent(qa)
    asked = await qa.ask(await qa.signup())
    assert asked["id"] == 101


async def test_a_seed_never_reuses_the_id_of_a_deleted_question(qa: QA, settings: Settings) -> None:
    user = await qa.signup()
    first, last = await qa.ask(user), await qa.ask(user, title="The one deleted")
    r = await qa.client.delete(f"/api/questions/{last['id']}", headers=user.headers)
    assert r.status_code == 204
    await seed(settings, plan(questions=5))
    seeded = await scalar(qa, f"SELECT min(id) FROM questions WHERE id <> {first['id']}")
    assert seeded > last["id"]


async def test_indexes_built_after_a_large_seed_are_all_back_and_find_questions(
    qa: QA, settings: Settings
) -> None:
    schema = "SELECT count(*) FROM sqlite_master WHERE type IN ('index', 'trigger')"
    if settings.database_url and settings.database_url.startswith("postgresql"):
        schema = "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
    objects = await scalar(qa, schema)
    await seed(settings, plan(questions=40, rebuild_indexes_from=10))
    assert await scalar(qa, schema) == objects
    r = await qa.client.get("/api/questions", params={"q": "python"})
    assert r.status_code == 200 and r.json()["items"]
    r = await qa.client.get("/api/questions", params={"tag": "python", "sort": "activity"})
    assert r.status_code == 200 and r.json()["items"]
    asked = await qa.ask(await qa.signup(), title="Zanzibar quokka question")
    r = await qa.client.get("/api/questions", params={"q": "zanzibar quokka"})
    assert [item["id"] for item in r.json()["items"]] == [asked["id"]], "triggers are back"


async def test_without_superuser_rights_a_seed_checks_foreign_keys_and_is_still_consistent(
    pg_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL only: the other path (no session_replication_role, one connection, accepted
    # answers linked by an UPDATE after the answers) exists for roles that are not superusers.
    await truncate(pg_database)
    role = f"herald_seed_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_database)
    await admin.execute(
        f'CREATE ROLE "{role}" LOGIN; GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"; '
        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"'
    )
    try:
        url = pg_database.replace("postgres@", f"{role}@", 1)
        with caplog.at_level(logging.INFO, logger="qasite.seed"):
            totals = await seed(qa_settings(tmp_path, url), plan(questions=120))
        assert "not a superuser" in caplog.text
        assert totals["questions"] == 120
        async with running_qa(qa_settings(tmp_path, pg_database)) as qa:
            await assert_consistent(qa)
            accepted = "SELECT count(*) FROM questions WHERE accepted_answer_id IS NOT NULL"
            assert await scalar(qa, accepted) > 0
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
        await admin.close()


async def test_the_seed_command_reports_what_it_wrote(
    qa: QA, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings.database_url is not None
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    argv = ["seed", "--questions", "25", "--users", "6", "--seed", "5",
            "--now", "2026-11-01T00:00:00"]  # fmt: skip
    status = await asyncio.to_thread(main, argv)
    assert status == 0
    assert "25 questions" in capsys.readouterr().out
    assert await scalar(qa, "SELECT count(*) FROM questions") == 25
    assert await asyncio.to_thread(main, ["seed", "--questions", "1", "--users", "1"]) == 2
