"""The seed's data, made deterministically: :class:`SeedPlan` (how much), :class:`Generator`
(the rows, batch by batch, from one seeded random stream) and :func:`pipeline` (batches made one
ahead by a thread while a loader writes the previous one).

The rows are consistent by construction: every score is the sum of its votes (no one votes on
their own post, at most once per post), every ``answer_count`` is the number of answers, about
half of the answered questions accept one, ``last_activity_at`` is the latest answer or
comment, and ``body_html`` is exactly what :func:`qasite.domain.rendering.render_markdown`
makes of ``body_md``. :data:`COLUMNS` is the row layout both loaders write.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import queue
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qasite.seed.vocabulary import (
    FIRST_NAMES,
    NOUNS,
    TAG_NAMES,
    TITLE_TEMPLATES,
    VERBS,
    WORDS,
)

SEED_PASSWORD = "seed-password"  # noqa: S105 - the documented password of demo users
SEED_EMAIL_DOMAIN = "seed.example"
INDEX_REBUILD_MIN_QUESTIONS = 50_000
"""From this many new questions on, plain indexes (and FTS5) are built after the load."""
REBUILT_TABLES = ("questions", "question_tags", "answers", "comments", "votes")
"""The big tables whose plain indexes a large seed drops and builds again after the load."""
ID_TABLES = ("users", "questions", "answers", "comments", "votes", "tags")
"""The tables with an id the seed hands out (past every id the database handed out)."""

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
    rebuild_indexes_from: int = INDEX_REBUILD_MIN_QUESTIONS
    """From this many questions on, the loaders drop plain indexes and build them at the end."""

    def __post_init__(self) -> None:
        if self.questions < 0 or self.users < 2 or self.tags < 1:
            raise ValueError("need questions >= 0, users >= 2 and tags >= 1")
        if min(self.answers_mean, self.comments_mean, self.votes_mean) < 0 or self.days <= 0:
            raise ValueError("means must be >= 0 and days > 0")
        if self.batch_questions < 1:
            raise ValueError("batch_questions must be >= 1")

    @property
    def rebuilds_indexes(self) -> bool:
        """Whether the loaders build the plain indexes after the load, not during it."""
        return self.questions >= self.rebuild_indexes_from


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


def _produce(batches: Iterator[Batch], out: queue.Queue[Batch | BaseException | None]) -> None:
    try:
        for batch in batches:
            out.put(batch)
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
        out.put(exc)


def pipeline(generator: Generator) -> Iterator[Batch]:
    """The generator's batches, made one ahead by a thread while the caller writes."""
    handoff: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=2)
    thread = threading.Thread(target=_produce, args=(generator.batches(), handoff), daemon=True)
    thread.start()
    while (item := handoff.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()
