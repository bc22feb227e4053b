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
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import logging
import math
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher

from qasite.core.db import Database, migrate
from qasite.core.settings import Settings

log = logging.getLogger(__name__)

SEED_PASSWORD = "seed-password"  # noqa: S105 - the documented password of demo users
SEED_EMAIL_DOMAIN = "seed.example"
INDEX_REBUILD_MIN_QUESTIONS = 50_000
"""From this many new questions on, plain indexes (and FTS5) are built after the load."""
REBUILT_TABLES = ("questions", "question_tags", "answers", "comments", "votes")

WORD_POOL = 1 << 20
Row = tuple[Any, ...]

COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "email", "display_name", "password_hash", "verified", "created_at"),
    "tags": ("id", "name"),
    "questions": ("id", "author_id", "title", "body_md", "body_html", "score", "score_version",
                  "edit_version", "answer_count", "accepted_answer_id", "created_at",
                  "updated_at", "last_activity_at"),
    "question_tags": ("question_id", "tag_id"),
    "answers": ("id", "question_id", "author_id", "body_md", "body_html", "score",
                "score_version", "edit_version", "created_at", "updated_at"),
    "comments": ("id", "author_id", "question_id", "answer_id", "body", "edit_version",
                 "created_at", "updated_at"),
    "votes": ("id", "user_id", "question_id", "answer_id", "value", "created_at"),
}  # fmt: skip
"""Tables in the order they are written, with the column order of their rows."""

TIME_COLUMNS = {
    table: tuple(i for i, name in enumerate(cols) if name.endswith("_at"))
    for table, cols in COLUMNS.items()
}

# fmt: off
TAG_NAMES = (
    "python", "javascript", "java", "c#", "php", "android", "html", "jquery", "c++", "css",
    "ios", "sql", "mysql", "r", "reactjs", "node.js", "arrays", "c", "asp.net", "json",
    "python-3.x", "ruby-on-rails", ".net", "sql-server", "swift", "django", "angular",
    "objective-c", "excel", "pandas", "angularjs", "regex", "typescript", "ruby", "linux",
    "ajax", "iphone", "vba", "xml", "laravel", "spring", "asp.net-mvc", "database", "wordpress",
    "string", "flutter", "postgresql", "mongodb", "wpf", "windows", "xcode", "amazon-web-services",
    "bash", "git", "oracle", "spring-boot", "dataframe", "azure", "firebase", "list",
    "multithreading", "docker", "vb.net", "react-native", "eclipse", "algorithm", "powershell",
    "macos", "visual-studio", "numpy", "image", "forms", "scala", "function", "vue.js",
    "performance", "twitter-bootstrap", "selenium", "winforms", "kotlin", "loops", "express",
    "dart", "hibernate", "sqlite", "matlab", "python-2.7", "shell", "rest", "apache",
    "entity-framework", "android-studio", "csv", "maven", "linq", "qt", "dictionary",
    "unit-testing", "asp.net-core", "facebook", "apache-spark", "tensorflow", "file", "swing",
    "class", "unity3d",
    "sorting", "date", "authentication", "go", "symfony", "t-sql", "opencv", "matplotlib",
    ".htaccess", "google-chrome", "for-loop", "datetime", "codeigniter", "perl", "http",
    "validation", "sockets", "google-maps", "object", "uitableview", "xaml", "oop", "redis",
    "websocket", "asyncio", "fastapi", "sqlalchemy", "nginx", "kubernetes", "rust", "haskell",
)
WORDS = (
    "the", "a", "to", "is", "and", "in", "of", "it", "i", "this", "that", "for", "with", "not",
    "but", "on", "my", "when", "can", "have", "be", "an", "if", "from", "how", "what", "code",
    "error", "file", "function", "value", "data", "get", "use", "using", "work", "want", "need",
    "which", "there", "new", "set", "list", "table", "string", "class", "method", "object",
    "array", "server", "user", "page", "request", "response", "query", "database", "test",
    "run", "call", "return", "type", "name", "line", "loop", "variable", "result", "problem",
    "example", "image", "time", "date", "number", "key", "index", "row", "column", "field",
    "form", "button", "event", "thread", "process", "memory", "output", "input", "client",
    "connection", "socket", "message", "queue", "cache", "session", "token", "password",
    "login", "config", "setting", "option", "module", "package", "library", "version",
    "update", "install", "build", "compile", "deploy", "docker", "container", "image",
    "script", "command", "shell", "path", "folder", "directory", "read", "write", "open",
    "close", "parse", "convert", "format", "print", "log", "debug", "exception", "stack",
    "trace", "crash", "timeout", "slow", "fast", "performance", "async", "await", "promise",
    "callback", "handler", "route", "endpoint", "api", "json", "xml", "html", "css", "style",
    "element", "component", "state", "props", "render", "view", "model", "controller",
    "schema", "migration", "insert", "select", "delete", "join", "filter", "sort", "group",
    "count", "sum", "average", "regex", "pattern", "match", "replace", "split", "merge",
    "branch", "commit", "push", "pull", "remote", "local", "network", "proxy", "port",
    "host", "domain", "certificate", "encryption", "hash", "upload", "download", "stream",
    "buffer", "byte", "encoding", "unicode", "character", "integer", "float", "boolean",
    "null", "undefined", "pointer", "reference", "instance", "interface", "generic",
    "template", "lambda", "closure", "scope", "recursion", "iterator", "generator",
    "dictionary", "tuple", "vector", "matrix", "graph", "tree", "node", "edge", "search",
    "algorithm", "complexity", "benchmark", "profile", "worker", "pool", "lock", "mutex",
    "deadlock", "race", "signal", "kernel", "driver", "device", "browser", "chrome",
    "firefox", "mobile", "android", "layout", "screen", "window", "dialog", "menu", "scroll",
    "animation", "canvas", "pixel", "font", "color", "width", "height", "margin", "border",
    "redis", "postgres", "sqlite", "mongo", "kafka", "nginx", "apache", "linux", "windows",
)
# fmt: on
TITLE_TEMPLATES = (
    "How do I {v} a {n} in {t}?",
    "Why does my {n} {v} when the {n2} is empty?",
    "{T}: {n} {v} fails with a {n2} error",
    "Best way to {v} {n} and {n2} with {t}",
    "{T} {n} returns the wrong {n2}",
    "Cannot {v} {n} after {v2} the {n2}",
    "What is the difference between {n} and {n2} in {t}?",
    "How to {v} every {n} of a {n2}",
    "{T}: {v} a {n} without {v2} the {n2}",
    "Is it possible to {v} the {n} from a {n2}?",
)
VERBS = ("read", "write", "parse", "convert", "sort", "filter", "merge", "split", "update",
         "delete", "insert", "render", "cache", "load", "save", "send", "receive", "open",
         "close", "compile", "deploy", "debug", "test", "index", "stream", "upload", "encode",
         "decode", "hash", "lock", "join", "group", "count", "format", "validate")  # fmt: skip
NOUNS = ("file", "string", "list", "table", "array", "dictionary", "date", "column", "row",
         "request", "response", "query", "socket", "thread", "image", "form", "button", "token",
         "session", "cache", "queue", "message", "module", "package", "container", "branch",
         "commit", "buffer", "stream", "iterator", "generator", "object", "class", "method",
         "variable", "exception", "pointer", "matrix", "graph", "tree", "node", "path")  # fmt: skip
FIRST_NAMES = ("Ada", "Alan", "Grace", "Linus", "Guido", "Barbara", "Ken", "Dennis", "Margaret",
               "Donald", "Edsger", "Frances", "John", "Radia", "Tim", "Vint", "Anita", "Bjarne",
               "Katherine", "Niklaus", "Sophie", "Yukihiro", "Brendan", "Hedy")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeedPlan:
    """How much to make; the means are per question (answers) and per post (comments, votes)."""

    questions: int
    users: int
    tags: int = 300
    answers_mean: float = 1.5
    comments_mean: float = 0.6
    votes_mean: float = 2.0
    days: float = 365.0
    seed: int = 1
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    batch_questions: int = 5_000

    def __post_init__(self) -> None:
        if self.questions < 0 or self.users < 2 or self.tags < 1:
            raise ValueError("need questions >= 0, users >= 2 and tags >= 1")
        if min(self.answers_mean, self.comments_mean, self.votes_mean) < 0 or self.days <= 0:
            raise ValueError("means must be >= 0 and days > 0")
        if self.batch_questions < 1:
            raise ValueError("batch_questions must be >= 1")


@dataclass(frozen=True, slots=True)
class Start:
    """The largest id already in each table (0 when empty) and the existing tags by name."""

    users: int = 0
    questions: int = 0
    answers: int = 0
    comments: int = 0
    votes: int = 0
    tags: int = 0
    tag_ids: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Batch:
    """Rows for each table (keys of :data:`COLUMNS`), written in that order."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in COLUMNS})

    def count(self) -> dict[str, int]:
        return {table: len(rows) for table, rows in self.rows.items()}


def zipf_weights(n: int, exponent: float = 1.1) -> list[float]:
    """Cumulative weights of ranks 1..n under a Zipf law (for ``random.choices``)."""
    return list(itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, n + 1)))


def tag_names(count: int, rng: random.Random) -> list[str]:
    """*count* distinct tag names: real ones first, then ``word-word`` made from the word list."""
    names = list(TAG_NAMES[:count])
    seen = set(names)
    while len(names) < count:
        name = f"{rng.choice(NOUNS)}-{rng.choice(WORDS)}"[:35]
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


class Generator:
    """Makes the rows of a :class:`SeedPlan`, batch by batch, from one seeded random stream."""

    def __init__(self, plan: SeedPlan, start: Start, password_hash: str) -> None:
        self.plan = plan
        self.start = start
        self.rng = random.Random(plan.seed)
        self.password_hash = password_hash
        self.first_at = plan.now - dt.timedelta(days=plan.days)
        self.tags = tag_names(plan.tags, self.rng)
        self.tag_weights = zipf_weights(len(self.tags))
        # Text is cut from one long Zipf-distributed stream: one draw per word would be the
        # slowest part of a seed.
        self.word_pool = self.rng.choices(WORDS, cum_weights=zipf_weights(len(WORDS), 1.0),
                                          k=WORD_POOL)  # fmt: skip
        self.tag_ids: list[int] = []
        self.next_answer = start.answers + 1
        self.next_comment = start.comments + 1
        self.next_vote = start.votes + 1
        self.user_ids = range(start.users + 1, start.users + plan.users + 1)

    def batches(self) -> Iterator[Batch]:
        """The users and tags first, then questions with everything under them."""
        yield self._people_and_tags()
        size = self.plan.batch_questions
        first = self.start.questions + 1
        for offset in range(0, self.plan.questions, size):
            batch = Batch()
            for index in range(offset, min(offset + size, self.plan.questions)):
                self._question(batch, first + index, index)
            yield batch

    def _people_and_tags(self) -> Batch:
        batch = Batch()
        joined = self.first_at - dt.timedelta(days=30)
        for user_id in self.user_ids:
            name = f"{self.rng.choice(FIRST_NAMES)} {user_id}"
            batch.rows["users"].append((user_id, f"user{user_id}@{SEED_EMAIL_DOMAIN}", name,
                                        self.password_hash, True, joined))  # fmt: skip
        next_tag = self.start.tags + 1
        for name in self.tags:
            existing = self.start.tag_ids.get(name)
            if existing is None:
                batch.rows["tags"].append((next_tag, name))
                existing, next_tag = next_tag, next_tag + 1
            self.tag_ids.append(existing)
        return batch

    # -- text ------------------------------------------------------------------------------

    def _words(self, count: int) -> list[str]:
        at = self.rng.randrange(WORD_POOL - count)
        return self.word_pool[at : at + count]

    def _title(self, tag: str) -> str:
        rng = self.rng
        template = rng.choice(TITLE_TEMPLATES)
        title = template.format(v=rng.choice(VERBS), v2=rng.choice(VERBS), n=rng.choice(NOUNS),
                                n2=rng.choice(NOUNS), t=tag, T=tag.capitalize())  # fmt: skip
        return title[:150]

    def _body(self, paragraphs: int, low: int, high: int) -> tuple[str, str]:
        """Markdown of plain paragraphs (some with inline code) and its exact HTML."""
        md: list[str] = []
        html: list[str] = []
        for _ in range(paragraphs):
            words = self._words(self.rng.randint(low, high))
            words[0] = words[0].capitalize()
            if self.rng.random() < 0.3:
                at = self.rng.randrange(len(words))
                code = words[at]
                words[at] = f"`{code}()`"
                text = " ".join(words) + "."
                md.append(text)
                html.append(f"<p>{text.replace(f'`{code}()`', f'<code>{code}()</code>')}</p>\n")
            else:
                text = " ".join(words) + "."
                md.append(text)
                html.append(f"<p>{text}</p>\n")
        return "\n\n".join(md), "".join(html)

    # -- posts -----------------------------------------------------------------------------

    def _count(self, mean: float) -> int:
        """A geometric count with the given mean (many zeros, a long tail)."""
        if mean <= 0:
            return 0
        return int(math.log1p(-self.rng.random()) / math.log1p(-1.0 / (1.0 + mean)))

    def _later(self, after: dt.datetime, mean_hours: float) -> dt.datetime:
        later = after + dt.timedelta(hours=self.rng.expovariate(1.0 / mean_hours))
        return min(later, self.plan.now)

    def _author(self) -> int:
        return self.user_ids[int(len(self.user_ids) * self.rng.random() ** 2)]

    def _votes(self, batch: Batch, author: int, post: tuple[int | None, int | None],
               after: dt.datetime, up: float) -> int:  # fmt: skip
        wanted = min(self._count(self.plan.votes_mean), len(self.user_ids) - 1)
        if not wanted:
            return 0
        voters = [u for u in self.rng.sample(self.user_ids, wanted + 1) if u != author][:wanted]
        score = 0
        for voter in voters:
            value = 1 if self.rng.random() < up else -1
            score += value
            batch.rows["votes"].append((self.next_vote, voter, post[0], post[1], value,
                                        self._later(after, 48)))  # fmt: skip
            self.next_vote += 1
        return score

    def _comments(self, batch: Batch, post: tuple[int | None, int | None],
                  after: dt.datetime) -> dt.datetime:  # fmt: skip
        """Comments on *post*; returns the time of the last one (or *after*)."""
        last = after
        for _ in range(self._count(self.plan.comments_mean)):
            when = self._later(after, 12)
            body = " ".join(self._words(self.rng.randint(5, 20))).capitalize() + "."
            batch.rows["comments"].append(
                (self.next_comment, self._author(), post[0], post[1], body, 0, when, when)
            )
            self.next_comment += 1
            last = max(last, when)
        return last

    def _question(self, batch: Batch, question_id: int, index: int) -> None:
        plan, rng = self.plan, self.rng
        span = (plan.now - self.first_at) / max(plan.questions, 1)
        created = self.first_at + span * (index + rng.random())
        author = self._author()
        picks = rng.choices(range(len(self.tags)), cum_weights=self.tag_weights,
                            k=rng.randint(1, 5))  # fmt: skip
        tag_indexes = list(dict.fromkeys(picks))
        body_md, body_html = self._body(rng.randint(1, 3), 8, 30)
        score = self._votes(batch, author, (question_id, None), created, 0.85)
        last_activity = self._comments(batch, (question_id, None), created)
        answers: list[tuple[int, int]] = []
        for _ in range(self._count(plan.answers_mean)):
            answer_id, when = self.next_answer, self._later(created, 24)
            self.next_answer += 1
            answer_author = self._author()
            a_md, a_html = self._body(rng.randint(1, 2), 6, 25)
            a_score = self._votes(batch, answer_author, (None, answer_id), when, 0.8)
            batch.rows["answers"].append((answer_id, question_id, answer_author, a_md, a_html,
                                          a_score, 0, 0, when, when))  # fmt: skip
            answers.append((a_score, answer_id))
            last_activity = max(last_activity, when, self._comments(batch, (None, answer_id), when))
        accepted = max(answers)[1] if answers and rng.random() < 0.5 else None
        title = self._title(self.tags[tag_indexes[0]])
        batch.rows["questions"].append((question_id, author, title, body_md, body_html, score, 0,
                                        0, len(answers), accepted, created, created,
                                        last_activity))  # fmt: skip
        for i in tag_indexes:
            batch.rows["question_tags"].append((question_id, self.tag_ids[i]))


# --- writers --------------------------------------------------------------------------------


def _produce(batches: Iterator[Batch], out: queue.Queue[Batch | BaseException | None]) -> None:
    try:
        for batch in batches:
            out.put(batch)
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
        out.put(exc)


def _pipeline(generator: Generator) -> Iterator[Batch]:
    """The generator's batches, made one ahead by a thread while the caller writes."""
    handoff: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=2)
    thread = threading.Thread(target=_produce, args=(generator.batches(), handoff), daemon=True)
    thread.start()
    while (item := handoff.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def _sqlite_time(value: dt.datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format (naive UTC text that sorts in time order).
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_rows(table: str, rows: list[Row]) -> Iterator[Row]:
    times = TIME_COLUMNS[table]
    if not times:
        yield from rows
        return
    for row in rows:
        values = list(row)
        for i in times:
            values[i] = _sqlite_time(values[i])
        yield tuple(values)


def _insert_sql(table: str) -> str:
    cols = COLUMNS[table]
    # Table and column names come from COLUMNS, never from input (so for the S608s below).
    values = ", ".join("?" * len(cols))
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({values})"  # noqa: S608


def _sqlite_drop_for_load(conn: sqlite3.Connection) -> list[str]:
    """Drop the big tables' plain indexes and the full-text triggers; their definitions.

    Indexes that back a constraint (no ``sql`` in ``sqlite_master``) stay.
    """
    marks = ", ".join("?" * len(REBUILT_TABLES))
    found = conn.execute(
        f"SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "  # noqa: S608
        f"AND sql IS NOT NULL AND tbl_name IN ({marks}) ORDER BY type",
        REBUILT_TABLES,
    ).fetchall()
    for kind, name, _ in found:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    return [sql for _, _, sql in found]


def seed_sqlite(path: str, generator: Generator) -> dict[str, int]:
    """Write *generator*'s rows into the SQLite file *path* (schema already migrated).

    A large seed (:data:`INDEX_REBUILD_MIN_QUESTIONS`) drops the plain indexes and the
    full-text triggers, then builds the indexes again and rebuilds ``questions_fts`` in one
    pass at the end.
    """
    totals = dict.fromkeys(COLUMNS, 0)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        dropped = []
        if generator.plan.questions >= INDEX_REBUILD_MIN_QUESTIONS:
            dropped = _sqlite_drop_for_load(conn)
        try:
            for batch in _pipeline(generator):
                conn.execute("BEGIN IMMEDIATE")
                for table, rows in batch.rows.items():
                    if rows:
                        conn.executemany(_insert_sql(table), _sqlite_rows(table, rows))
                        totals[table] += len(rows)
                conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for definition in dropped:
                conn.execute(definition)
            if dropped:
                conn.execute("INSERT INTO questions_fts(questions_fts) VALUES ('rebuild')")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return totals


ID_TABLES = ("users", "questions", "answers", "comments", "votes", "tags")


async def _pg_start(conn: Any) -> Start:
    """Where new ids start: past the largest row and past every id the sequence handed out,
    so a seed never reuses the id of a deleted post (ids name channels)."""
    used = {}
    for table in ID_TABLES:
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        handed_out = await conn.fetchval(
            f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {sequence}"  # noqa: S608
        )
        largest = await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608
        used[table] = max(int(handed_out), int(largest))
    tag_rows = await conn.fetch("SELECT id, name FROM tags")
    return Start(**used, tag_ids={r["name"]: int(r["id"]) for r in tag_rows})


def _sqlite_start(path: str) -> Start:
    """As :func:`_pg_start`: past the largest row and past ``sqlite_sequence`` (AUTOINCREMENT)."""
    conn = sqlite3.connect(path)
    try:
        sequences: dict[str, int] = {}
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            sequences = {
                name: int(seq)
                for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence")
            }
        used = {
            table: max(
                int(conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0),  # noqa: S608
                sequences.get(table, 0),
            )
            for table in ID_TABLES
        }
        tag_ids = {name: int(i) for i, name in conn.execute("SELECT id, name FROM tags")}
    finally:
        conn.close()
    return Start(**used, tag_ids=tag_ids)


LANES = (("users", "tags", "questions", "question_tags"), ("answers", "comments", "votes"))
"""Tables copied side by side on two connections when foreign keys are not checked."""


async def _copy_tables(
    conn: Any, batch: Batch, tables: Sequence[str], totals: dict[str, int]
) -> None:
    async with conn.transaction():
        for table in tables:
            if rows := batch.rows[table]:
                await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
                totals[table] += len(rows)


async def _pg_copy(conns: Sequence[Any], batches: Iterator[Batch]) -> dict[str, int]:
    """COPY every batch: on two connections at once (two backends, two cores) when given two.

    With one connection, foreign keys are checked: the accepted answer of a question does not
    exist when the question is copied, so it is linked by one UPDATE after all the answers.
    """
    totals = dict.fromkeys(COLUMNS, 0)
    late_accepts: list[tuple[int, int]] = []
    loop = asyncio.get_running_loop()
    source = iter(batches)
    sentinel = object()
    while (batch := await loop.run_in_executor(None, next, source, sentinel)) is not sentinel:
        assert isinstance(batch, Batch)
        if len(conns) == 2:
            await asyncio.gather(*(_copy_tables(c, batch, lane, totals)
                                   for c, lane in zip(conns, LANES, strict=True)))  # fmt: skip
            continue
        questions = batch.rows["questions"]
        late_accepts.extend((r[0], r[9]) for r in questions if r[9] is not None)
        batch.rows["questions"] = [(*r[:9], None, *r[10:]) for r in questions]
        await _copy_tables(conns[0], batch, list(COLUMNS), totals)
    if late_accepts:
        conn = conns[0]
        await conn.execute("CREATE TEMP TABLE seed_accepts (question_id bigint, answer_id bigint)")
        await conn.copy_records_to_table("seed_accepts", records=late_accepts)
        await conn.execute("UPDATE questions q SET accepted_answer_id = s.answer_id "
                           "FROM seed_accepts s WHERE q.id = s.question_id")  # fmt: skip
    return totals


async def _drop_plain_indexes(conn: Any) -> list[str]:
    """Drop the indexes of the big tables that back no constraint; their definitions.

    Building an index once over the loaded rows is several times faster than keeping it up to
    date row by row (the GIN index of ``questions.search`` most of all). Primary keys and
    unique constraints stay: the rows are checked against them as they arrive.
    """
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = current_schema() "
        "AND tablename = ANY($1::text[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        list(REBUILT_TABLES),
    )
    for row in rows:
        await conn.execute(f'DROP INDEX "{row["indexname"]}"')
    return [str(row["indexdef"]) for row in rows]


async def seed_postgresql(url: str, plan: SeedPlan, password_hash: str) -> dict[str, int]:
    """Write a seed into the PostgreSQL database at *url* (schema already migrated)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    second = None
    try:
        start = await _pg_start(conn)
        generator = Generator(plan, start, password_hash)
        try:
            await conn.execute("SET session_replication_role = replica")
            second = await asyncpg.connect(url)
            await second.execute("SET session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError:
            log.info("not a superuser: foreign keys are checked row by row (slower)")
        dropped = (
            await _drop_plain_indexes(conn) if plan.questions >= INDEX_REBUILD_MIN_QUESTIONS else []
        )
        try:
            conns = [conn] if second is None else [conn, second]
            totals = await _pg_copy(conns, _pipeline(generator))
        finally:
            await conn.execute("SET maintenance_work_mem = '512MB'")
            for definition in dropped:
                await conn.execute(definition)
        for table in ("users", "tags", "questions", "answers", "comments", "votes"):
            nextval = f"(SELECT coalesce(max(id), 0) + 1 FROM {table})"  # noqa: S608
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {nextval}, false)"
            )
        await conn.execute("ANALYZE")
    finally:
        if second is not None:
            await second.close()
        await conn.close()
    return totals


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
        generator = Generator(plan, _sqlite_start(path), password_hash)
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
