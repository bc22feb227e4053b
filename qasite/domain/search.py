"""Searching and listing questions: full-text query, filters, four sorts, keyset cursors.

    query = SearchQuery.build(text="read file", tags=("python",), sort=None, limit=30)
    page = await search_questions(session, query, codec, cursor=None)   # page.next_cursor
    earlier = await search_questions(session, query, codec, cursor=later.prev_cursor)

Full text runs on SQLite's FTS5 table ``questions_fts`` or on PostgreSQL's ``questions.search``
``tsvector`` column (migration 0002). The user's text is never handed to either engine's query
syntax: :func:`parse_terms` reduces it to words, ``"quoted phrases"`` and ``-excluded`` words,
which are re-quoted for FTS5 (a ``MATCH`` expression) or for ``websearch_to_tsquery``.

Semantics (docs/qa-core.md, "Search"):

* every word and phrase must match (AND); ``-word`` excludes; several tags: all of them;
* *author_id*: only that user's questions (the user page);
* *answered* means at least one answer (``answer_count > 0``), accepted or not;
* *created_from* is inclusive, *created_to* exclusive;
* sorts: ``newest`` (``created_at``), ``votes`` (``score``), ``activity``
  (``last_activity_at``), ``relevance`` (bm25 on SQLite with the title weighted 10:1,
  ``ts_rank`` on PostgreSQL with title A and body B); all descending, ties broken by id
  descending, so every sort is a total order and keyset pages neither repeat nor skip rows.

A cursor is a row's sort key and id, a direction (after it: ``next_cursor``; before it:
``prev_cursor``), the sort and a fingerprint of the filters, signed with HMAC-SHA256
(:class:`CursorCodec`): a cursor that was altered, belongs to another query or sort, or is not
a cursor at all is refused with :class:`BadCursor` (a 422 over HTTP), never a 500. A relevance
cursor pages through a stable order only while the matching rows do not change (bm25 depends
on the whole index), which is the usual contract of ranked search.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    column,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy.dialects.postgresql import REGCONFIG, TSVECTOR
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from qasite.domain.errors import InvalidInput
from qasite.domain.models import Question, Tag, User, question_tags
from qasite.domain.names import display_name

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
MAX_PAGE = 100
TITLE_WEIGHT_SQLITE = 10.0
"""bm25 column weights (title, body): a word in the title counts as ten in the body."""

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')
_WORD = re.compile(r"\w+")


class Sort(enum.StrEnum):
    NEWEST = "newest"
    VOTES = "votes"
    ACTIVITY = "activity"
    RELEVANCE = "relevance"


class BadCursor(InvalidInput):
    """A cursor that this service did not issue for this query; *problem* says which."""

    def __init__(self, problem: str) -> None:
        super().__init__("cursor", problem)


@dataclass(frozen=True, slots=True)
class Term:
    """One word or quoted phrase of a query; *negated* terms must not match."""

    words: tuple[str, ...]
    negated: bool = False


def parse_terms(text: str) -> list[Term]:
    """The words, ``"phrases"`` and ``-exclusions`` of *text*, lowercased; punctuation dropped.

    A word is a run of Unicode letters, digits or underscores (``c++`` is ``c``), so nothing
    of the engines' own syntax (``OR``, ``NEAR``, ``*``, ``:``, parentheses) survives.
    """
    terms: list[Term] = []
    for match in _TOKEN.finditer(text):
        phrase_neg, phrase, word_neg, word = match.groups()
        negated = bool(phrase_neg if phrase is not None else word_neg)
        words = tuple(w.lower() for w in _WORD.findall(phrase if phrase is not None else word))
        if words:
            terms.append(Term(words, negated))
    return terms


def fts5_expression(terms: Sequence[Term]) -> str:
    """An FTS5 ``MATCH`` expression: every positive term quoted and ANDed, negatives NOTed."""
    positive = " AND ".join(f'"{" ".join(t.words)}"' for t in terms if not t.negated)
    negative = " OR ".join(f'"{" ".join(t.words)}"' for t in terms if t.negated)
    return f"({positive}) NOT ({negative})" if negative else positive


def websearch_text(terms: Sequence[Term]) -> str:
    """Text for ``websearch_to_tsquery``: each term quoted (so ``or`` is a word, not OR)."""
    return " ".join(f'{"-" if t.negated else ""}"{" ".join(t.words)}"' for t in terms)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated search: build it with :meth:`build`, which raises :class:`InvalidInput`."""

    terms: tuple[Term, ...]
    tags: tuple[str, ...]
    created_from: dt.datetime | None
    created_to: dt.datetime | None
    min_score: int | None
    answered: bool | None
    sort: Sort
    limit: int
    author_id: int | None = None

    @classmethod
    def build(
        cls,
        *,
        text: str | None = None,
        tags: Sequence[str] = (),
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        min_score: int | None = None,
        answered: bool | None = None,
        sort: Sort | None = None,
        limit: int = 30,
        author_id: int | None = None,
    ) -> SearchQuery:
        terms: tuple[Term, ...] = ()
        if text is not None:
            if len(text) > MAX_QUERY_CHARS:
                raise InvalidInput("q", f"at most {MAX_QUERY_CHARS} characters")
            terms = tuple(parse_terms(text))
            if not any(not t.negated for t in terms):
                raise InvalidInput("q", "give at least one word to search for (letters or digits)")
            if len(terms) > MAX_TERMS:
                raise InvalidInput("q", f"at most {MAX_TERMS} words or phrases")
        if sort is None:
            sort = Sort.RELEVANCE if terms else Sort.NEWEST
        if sort is Sort.RELEVANCE and not terms:
            raise InvalidInput(None, "sort=relevance needs a full-text query (q)")
        created_from, created_to = _utc(created_from), _utc(created_to)
        if created_from is not None and created_to is not None and created_from >= created_to:
            raise InvalidInput(None, "created_from must be earlier than created_to")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"between 1 and {MAX_PAGE}")
        return cls(terms, tuple(dict.fromkeys(tags)), created_from, created_to, min_score,
                   answered, sort, limit, author_id)  # fmt: skip

    def fingerprint(self) -> str:
        """What a cursor must have been issued for: everything but the page size."""
        parts = [
            self.sort.value,
            websearch_text(self.terms),
            ",".join(sorted(self.tags)),
            self.created_from.isoformat() if self.created_from else "",
            self.created_to.isoformat() if self.created_to else "",
            "" if self.min_score is None else str(self.min_score),
            "" if self.answered is None else str(self.answered),
            "" if self.author_id is None else str(self.author_id),
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Aware UTC; a naive time is taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# --- cursors ------------------------------------------------------------------------------

Key = int | float | dt.datetime


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended (the last row's sort key and id: the next page is after it), or
    with *before*, where it began (the previous page is the rows just before it)."""

    key: Key
    id: int
    before: bool = False


class CursorCodec:
    """Signs and checks cursors with an HMAC key derived from the service's secret."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"herald-qa-search-cursor", "sha256").digest()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, "sha256").digest()[:16]

    def encode(self, query: SearchQuery, position: Position) -> str:
        key: Any = position.key
        if isinstance(key, dt.datetime):
            key = key.astimezone(dt.UTC).isoformat()
        fields: dict[str, Any] = {"f": query.fingerprint(), "k": key, "i": position.id}
        if position.before:
            fields["b"] = 1
        body = json.dumps(fields, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def decode(self, query: SearchQuery, cursor: str) -> Position:
        """The position *cursor* stands for; :class:`BadCursor` if it is not one of ours."""
        body_text, dot, mac_text = cursor.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, binascii.Error):
            raise BadCursor("not a cursor (pass next_cursor unchanged)") from None
        if not dot or not hmac.compare_digest(mac, self._mac(body)):
            raise BadCursor("altered or issued by another server; start again")
        data = json.loads(body)
        if data.get("f") != query.fingerprint():
            raise BadCursor("issued for other filters or another sort; start from the first page")
        return Position(_key_of(query.sort, data.get("k")), int(data["i"]), data.get("b") == 1)


def _key_of(sort: Sort, raw: object) -> Key:
    # The payload is ours (its MAC checked), so a mismatch here is a bug, not bad input.
    if sort in (Sort.NEWEST, Sort.ACTIVITY):
        assert isinstance(raw, str)
        return dt.datetime.fromisoformat(raw)
    if sort is Sort.VOTES:
        assert isinstance(raw, int)
        return raw
    assert isinstance(raw, float | int)
    return float(raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- SQL ----------------------------------------------------------------------------------

_fts = table("questions_fts", column("rowid"))
_fts_table: ColumnElement[Any] = literal_column("questions_fts")
_search = literal_column("questions.search", TSVECTOR)


def _rank_and_match(dialect: str, terms: Sequence[Term]) -> tuple[ColumnElement[float], Any]:
    """The relevance expression (higher is better) and the full-text condition."""
    if dialect == "sqlite":
        rank = -func.bm25(_fts_table, TITLE_WEIGHT_SQLITE, 1.0)
        return rank, _fts_table.op("MATCH")(fts5_expression(terms))
    tsquery = func.websearch_to_tsquery(literal("english", REGCONFIG), websearch_text(terms))
    return func.ts_rank(_search, tsquery, type_=Float), _search.op("@@")(tsquery)


_COLUMN_OF = {Sort.NEWEST: "created_at", Sort.VOTES: "score", Sort.ACTIVITY: "last_activity_at"}
"""The column of each sort but relevance; each has an index ``(column, id)`` for keyset pages."""


async def _tag_ids(session: AsyncSession, names: Sequence[str]) -> list[int] | None:
    """The ids of the tags *names*; None when one of them does not exist (nothing can match)."""
    if not names:
        return []
    ids = (await session.scalars(select(Tag.id).where(Tag.name.in_(names)))).all()
    return list(ids) if len(ids) == len(names) else None


@dataclass(frozen=True, slots=True)
class Found:
    """A question on a page of results, with its author's display name."""

    question: Question
    author_name: str


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results, the cursor of the next one (None on the last page) and of the
    previous one (None on the first page)."""

    found: list[Found]
    next_cursor: str | None
    prev_cursor: str | None = None


async def search_questions(
    session: AsyncSession, query: SearchQuery, codec: CursorCodec, *, cursor: str | None
) -> SearchPage:
    """One page of questions matching *query*, after the position *cursor* names (or, for a
    ``prev_cursor``, the page just before it).

    A previous page is read backwards (ascending from the position) and turned round, so it is
    a keyset range scan like a next page, and the two directions agree on the same rows.
    """
    position = codec.decode(query, cursor) if cursor is not None else None
    tag_ids = await _tag_ids(session, query.tags)
    if tag_ids is None:
        return SearchPage(found=[], next_cursor=None)
    dialect = session.get_bind().dialect.name
    rank: ColumnElement[float] | None = None
    statement: Select[*tuple[Any, ...]] = (
        select(Question, User.display_name)
        .join(User, User.id == Question.author_id)
        .options(selectinload(Question.tags))
    )
    conditions: list[Any] = []
    if query.terms:
        rank, match = _rank_and_match(dialect, query.terms)
        if dialect == "sqlite":
            statement = statement.join(_fts, _fts.c.rowid == Question.id)
        conditions.append(match)
        if query.sort is Sort.RELEVANCE:
            statement = statement.add_columns(rank)
    conditions.extend(_filters(query, tag_ids))
    key: ColumnElement[Any] = (
        rank if rank is not None and query.sort is Sort.RELEVANCE
        else getattr(Question, _COLUMN_OF[query.sort])
    )  # fmt: skip
    backward = position is not None and position.before
    if position is not None:
        conditions.append(_after(key, position, computed=query.sort is Sort.RELEVANCE))
    if conditions:
        statement = statement.where(and_(*conditions))
    order = (key.asc(), Question.id.asc()) if backward else (key.desc(), Question.id.desc())
    statement = statement.order_by(*order).limit(query.limit + 1)
    rows = (await session.execute(statement)).all()
    page = list(rows[: query.limit])
    more = len(rows) > query.limit
    if backward:
        page.reverse()

    def at(row: Any, *, before: bool) -> str:
        row_key = (
            row[2] if query.sort is Sort.RELEVANCE else getattr(row[0], _COLUMN_OF[query.sort])
        )
        return codec.encode(query, Position(row_key, row[0].id, before))

    # Read backwards, the page the cursor came from follows; read forwards from a cursor, the
    # page it came from precedes. (An empty page links to neither: the pager's first page does.)
    has_next = backward or more
    has_prev = more if backward else position is not None
    next_cursor = at(page[-1], before=False) if page and has_next else None
    prev_cursor = at(page[0], before=True) if page and has_prev else None
    found = [Found(row[0], display_name(row[1])) for row in page]
    return SearchPage(found=found, next_cursor=next_cursor, prev_cursor=prev_cursor)


async def count_questions(session: AsyncSession, query: SearchQuery) -> int:
    """How many questions match *query* (all its pages): the result count of a search."""
    tag_ids = await _tag_ids(session, query.tags)
    if tag_ids is None:
        return 0
    statement = select(func.count()).select_from(Question)
    conditions: list[Any] = list(_filters(query, tag_ids))
    if query.terms:
        _, match = _rank_and_match(session.get_bind().dialect.name, query.terms)
        if session.get_bind().dialect.name == "sqlite":
            statement = statement.join(_fts, _fts.c.rowid == Question.id)
        conditions.append(match)
    if conditions:
        statement = statement.where(and_(*conditions))
    return int((await session.scalar(statement)) or 0)


def _filters(query: SearchQuery, tag_ids: Sequence[int]) -> list[ColumnElement[bool]]:
    """The conditions of every filter but the full-text one."""
    conditions: list[ColumnElement[bool]] = [
        exists().where(question_tags.c.question_id == Question.id, question_tags.c.tag_id == t)
        for t in tag_ids
    ]
    if query.created_from is not None:
        conditions.append(Question.created_at >= query.created_from)
    if query.created_to is not None:
        conditions.append(Question.created_at < query.created_to)
    if query.min_score is not None:
        conditions.append(Question.score >= query.min_score)
    if query.answered is not None:
        answers = Question.answer_count
        conditions.append(answers > 0 if query.answered else answers == 0)
    if query.author_id is not None:
        conditions.append(Question.author_id == query.author_id)
    return conditions


def _after(key: ColumnElement[Any], position: Position, *, computed: bool) -> ColumnElement[bool]:
    """Rows after *position* in ``key DESC, id DESC`` order (before it, with ``before``).

    On a column, a row-value comparison, which both databases answer with a range scan of the
    ``(column, id)`` index; a computed rank has no index, so the plain form does as well.
    """
    bound = literal(position.key, key.type)
    after_id = literal(position.id, Question.id.type)
    if position.before:
        if computed:
            return or_(key > bound, and_(key == bound, Question.id > after_id))
        return tuple_(key, Question.id) > tuple_(bound, after_id)
    if computed:
        return or_(key < bound, and_(key == bound, Question.id < after_id))
    return tuple_(key, Question.id) < tuple_(bound, after_id)
