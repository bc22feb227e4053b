"""Seed data: ``herald-qa seed --questions N --users U``, a realistic data set made fast.

    herald-qa seed --questions 1000000 --users 50000 --seed 7
    await seed(settings, SeedPlan(questions=500, users=50))      # from Python (demo mode)

What it writes (deterministic for a given ``--seed`` and ``--now``):

* users ``user<id>@seed.example``, all verified, all with the password
  :data:`SEED_PASSWORD` (one argon2 hash, computed once, so the demo can log in as anyone);
* tags: real tag names first, then made-up ``word-word`` names, chosen per question with a
  Zipf law (the first tag is far more common than the hundredth);
* questions created at an even pace over ``--days`` up to ``--now`` (ids in time order), with
  titles from templates and bodies of paragraphs drawn from a Zipf-weighted word list (plain
  Markdown: ``body_html`` is exactly what :func:`qasite.domain.rendering.render_markdown` makes
  of ``body_md``);
* answers, comments and votes after their post; every score is the sum of its votes (no one
  votes on their own post, at most once per post), every ``answer_count`` is the number of
  answers, about half of the answered questions accept one, ``last_activity_at`` is the latest
  answer or comment.

Seeding is not a live event: **no outbox rows and no inbox items are written**, so nothing is
published and the relay has nothing to do. It appends after the rows already there (new ids
start past every id the database ever handed out, so a deleted post's id is never reused).
It is meant for an empty database: a large seed drops indexes while it loads.

Speed: rows are made in batches by a producer thread while the previous batch is written
(PostgreSQL: binary ``COPY``, on two connections at once; SQLite: ``executemany`` in one
transaction per batch), with foreign-key checks off where the database allows it (SQLite
``PRAGMA foreign_keys=OFF``; PostgreSQL ``session_replication_role = replica``, superuser
only; otherwise one connection, and the accepted answers are linked by one ``UPDATE`` at
the end). The rows are consistent by construction.
A large seed drops the plain indexes of the big tables (and on SQLite the full-text
triggers) and builds them again at the end (``questions_fts`` in one ``rebuild``), which is
faster than maintaining them row by row.

The package: :mod:`~qasite.seed.generator` makes the rows (with the word lists of
:mod:`~qasite.seed.vocabulary`), :mod:`~qasite.seed.sqlite` and :mod:`~qasite.seed.postgres`
load them; this module chooses the loader (:func:`seed`) and holds the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from typing import Any

from argon2 import PasswordHasher

from qasite.core.db import Database, migrate
from qasite.core.settings import Settings
from qasite.seed.generator import SEED_PASSWORD, Generator, SeedPlan, Start
from qasite.seed.postgres import seed_postgresql
from qasite.seed.sqlite import seed_sqlite, sqlite_start

__all__ = [
    "SEED_PASSWORD",
    "Generator",
    "SeedPlan",
    "Start",
    "add_parser",
    "plan_of",
    "run",
    "seed",
    "seed_password_hash",
]


def seed_password_hash(settings: Settings) -> str:
    """One argon2 hash of :data:`SEED_PASSWORD` with the service's cost settings."""
    hasher = PasswordHasher(time_cost=settings.argon2_time_cost,
                            memory_cost=settings.argon2_memory_kib)  # fmt: skip
    return hasher.hash(SEED_PASSWORD)


async def seed(settings: Settings, plan: SeedPlan) -> dict[str, int]:
    """Migrate the database of *settings*, then write *plan*'s rows; the row counts written."""
    db = Database.open(settings)
    try:
        await migrate(db.engine)
        url = db.engine.url
    finally:
        await db.close()
    password_hash = seed_password_hash(settings)
    if url.get_backend_name() == "sqlite":
        path = url.database
        assert path, "an in-memory SQLite database cannot be seeded from another connection"
        generator = Generator(plan, sqlite_start(path), password_hash)
        return await asyncio.to_thread(seed_sqlite, path, generator)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return await seed_postgresql(plain, plan, password_hash)


# --- command line ---------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    """Register ``seed`` on the ``herald-qa`` command line (qasite/__main__.py)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "seed", help="fill the database with a generated data set (no events are published)"
    )
    p.add_argument("--questions", type=int, default=1000)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--tags", type=int, default=300)
    p.add_argument("--answers", type=float, default=1.5, help="mean answers per question")
    p.add_argument("--comments", type=float, default=0.6, help="mean comments per post")
    p.add_argument("--votes", type=float, default=2.0, help="mean votes per post")
    p.add_argument("--days", type=float, default=365.0, help="questions spread over this")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    p.add_argument("--now", type=dt.datetime.fromisoformat, default=None,
                   help="end of the time span (ISO 8601 UTC; default: now)")  # fmt: skip


def plan_of(args: argparse.Namespace) -> SeedPlan:
    now = args.now or dt.datetime.now(dt.UTC)
    return SeedPlan(
        questions=args.questions,
        users=args.users,
        tags=args.tags,
        answers_mean=args.answers,
        comments_mean=args.comments,
        votes_mean=args.votes,
        days=args.days,
        seed=args.seed,
        now=now if now.tzinfo else now.replace(tzinfo=dt.UTC),
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """``herald-qa seed``: returns the exit status."""
    try:
        plan = plan_of(args)
    except ValueError as exc:
        print(f"herald-qa seed: {exc}")
        return 2
    began = time.perf_counter()
    totals = asyncio.run(seed(settings, plan))
    elapsed = time.perf_counter() - began
    counts = ", ".join(f"{n} {table}" for table, n in totals.items())
    print(f"seeded {counts} in {elapsed:.1f} s")
    return 0
