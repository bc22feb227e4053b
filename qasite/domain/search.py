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
  (``last_activity_at``), ``relevance``; all descending, ties broken by id descending, so
  every sort is a total order and keyset pages neither repeat nor skip rows;
* ``relevance`` is two segments: first the questions with every word (and phrase) of the
  query in the title (on PostgreSQL ranked by ``ts_rank``, title A and body B, up to
  :data:`RANKED_TITLE_MATCHES_MAX` of them; on SQLite, and past that, newest first), then
  every other match, newest (highest id) first. Only the title matches
  are ranked, so the work is bounded by them (a tenth of the matches or less for the
  benchmark's two-word queries), not by all matches: ranking every match on 1,000,000
  questions read every matching row (bench/results/QA_SEARCH.md).

A cursor is a row's sort key and id, a direction (after it: ``next_cursor``; before it:
``prev_cursor``), the sort and a fingerprint of the filters, signed with HMAC-SHA256
(:class:`CursorCodec`): a cursor that was altered, belongs to another query or sort, or is not
a cursor at all is refused with :class:`BadCursor` (a 422 over HTTP), never a 500. A relevance
cursor pages through a stable order only while the matching rows do not change (the usual
contract of ranked search); its key is 2 + the rank in the title segment where it is ranked,
1.0 where it is listed newest first (SQLite; PostgreSQL past 3,000 title matches), 0.0 in the
other segment.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy.dialects.postgresql import REGCONFIG, TSQUERY, TSVECTOR
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain.errors import InvalidInput
from qasite.domain.models import Question, Tag, User, question_tags
from qasite.domain.names import display_name
from qasite.domain.tag_names import ids_of, session_tag_names, tag_ids

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
MAX_PAGE = 100

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
_ENGLISH = literal_column("'english'::regconfig", REGCONFIG)
"""A constant, not a bound parameter, so that the planner matches the expression index
``ix_questions_title_search`` (migration 0003) in every plan, generic ones included."""
TITLE_TIER_FLOOR = 1.0
"""Relevance keys of questions with every word in the title are 1.0 where they are listed
newest first (SQLite; PostgreSQL past :data:`RANKED_TITLE_MATCHES_MAX`), and
:data:`RANKED_FLOOR` + their rank where they are ranked; the other matches all have the key
0.0 and follow, newest (highest id) first."""
RANKED_FLOOR = 2.0
RANKED_TITLE_MATCHES_MAX = 3000
"""PostgreSQL ranks the title matches when there are at most this many (each is read from
the table); past it (``python``: 126,461 titles of 1,000,000, 3.5 s ranked) they are listed
newest first, a walk of the primary key that stops at the page's end."""


def _tsquery_text(terms: Sequence[Term], *, weight: str) -> str:
    """``to_tsquery`` text of the positive terms ANDed, each word quoted (so never syntax),
    a phrase's words joined by ``<->``, each word labelled *weight* (``:A``: in the title)."""
    return " & ".join(
        "(" + " <-> ".join(f"'{word}'{weight}" for word in term.words) + ")"
        for term in terms
        if not term.negated
    )


def _title_fts5_expression(terms: Sequence[Term]) -> str:
    """An FTS5 expression: the positive terms, all of them in the title column."""
    positive = " AND ".join(f'"{" ".join(t.words)}"' for t in terms if not t.negated)
    return f"{{title}} : ({positive})"


@dataclass(frozen=True, slots=True)
class _Shape:
    """What decides the text of a search's statements; the values (the query's words, the
    filters' values, the position, the page size) are bound parameters, named in
    :func:`_values` and :func:`_read_values`.

    Each shape's statements are built once per process (``functools.cache``) and reused, so a
    search builds no SQLAlchemy expression and computes no cache key: building them took
    1.7 ms of the 2.9 ms of Python a search cost on PostgreSQL, the query itself 0.2 ms
    (bench/results/QA_SEARCH.md). The shapes are few: a filter is present or not, tags count
    up to the route's limit of 5.
    """

    dialect: str
    sort: Sort
    full_text: bool
    negated: bool
    """Any excluded word or phrase (on PostgreSQL the title segment then tests them)."""
    tags: int
    created_from: bool
    created_to: bool
    min_score: bool
    answered: bool | None
    author: bool
    ranking_cap: int
    """:data:`RANKED_TITLE_MATCHES_MAX` when the shape was taken."""

    @classmethod
    def of(cls, dialect: str, query: SearchQuery, tags: int) -> _Shape:
        return cls(
            dialect=dialect,
            sort=query.sort,
            full_text=bool(query.terms),
            negated=any(t.negated for t in query.terms),
            tags=tags,
            created_from=query.created_from is not None,
            created_to=query.created_to is not None,
            min_score=query.min_score is not None,
            answered=query.answered,
            author=query.author_id is not None,
            ranking_cap=RANKED_TITLE_MATCHES_MAX,
        )


def _values(dialect: str, query: SearchQuery, tag_ids: Sequence[int]) -> dict[str, Any]:
    """The bound values of *query*'s statements (see :func:`_filters` and :func:`_segments`)."""
    values: dict[str, Any] = {f"tag_{i}": tag_id for i, tag_id in enumerate(tag_ids)}
    optional = {"created_from": query.created_from, "created_to": query.created_to,
                "min_score": query.min_score, "author_id": query.author_id}  # fmt: skip
    values.update((name, value) for name, value in optional.items() if value is not None)
    terms = query.terms
    if not terms:
        return values
    if dialect == "sqlite":
        full, title = fts5_expression(terms), _title_fts5_expression(terms)
        values["fts_match"] = full
        values["fts_in_title"] = f"({full}) AND {title}"
        values["fts_elsewhere"] = f"({full}) NOT {title}"
    else:
        values["websearch"] = websearch_text(terms)
        values["title_words"] = _tsquery_text(terms, weight="")
        values["weighted"] = _tsquery_text(terms, weight=":A")
    return values


def _text(name: str) -> BindParameter[str]:
    return bindparam(name, type_=String)


@dataclass(frozen=True, slots=True)
class _Segment:
    """One run of a sort order: its rows' full-text conditions and their sort key.

    Every sort but relevance is one segment. Relevance (docs/qa-core.md, "Search") is the
    questions with every word in the title, then every other match, newest first (*key*
    None: a constant key, *floor*, order by id). On PostgreSQL the title matches are two
    segments of which one is read: ranked (keys >= :data:`RANKED_FLOOR`) up to the cap,
    else newest first (key :data:`TITLE_TIER_FLOOR`).
    """

    conditions: tuple[Any, ...]
    key: ColumnElement[Any] | None
    floor: float | None = None
    """The lowest key of the segment; a position whose key is at or above it is in it."""
    fts_rowid: bool = False
    """A segment of one constant key is ordered by the id; with *fts_rowid*, by the FTS5
    rowid (the same number), whose order FTS5 serves itself, stopping at the page's end."""
    cap: int | None = None
    """Ranked only when it has at most *cap* rows (the segment after it lists them if not)."""
    when_capped: bool = False
    """Read only when the ranked segment before it had more than its cap."""

    @property
    def id_column(self) -> ColumnElement[Any]:
        return _fts.c.rowid if self.fts_rowid else Question.__table__.c.id


@functools.cache
def _segments(shape: _Shape) -> tuple[_Segment, ...]:
    """The segments of the order of a query of *shape*, in order."""
    if shape.sort is not Sort.RELEVANCE:
        column_key: ColumnElement[Any] = getattr(Question, _COLUMN_OF[shape.sort])
        return (_Segment((_match(shape.dialect),) if shape.full_text else (), column_key),)
    if shape.dialect == "sqlite":
        # No bm25 here: to weigh each word it reads the word's whole doclist (15-40 ms for
        # two common words on 1,000,000 questions, whatever the number of rows ranked), so
        # both segments are newest first, each read from FTS5 in rowid order, stopping at
        # the page's end.
        in_title = _fts_table.bool_op("MATCH")(_text("fts_in_title"))
        elsewhere = _fts_table.bool_op("MATCH")(_text("fts_elsewhere"))
        return (
            _Segment((in_title,), None, TITLE_TIER_FLOOR, fts_rowid=True),
            _Segment((elsewhere,), None, 0.0, fts_rowid=True),
        )
    tsquery = _websearch()
    title_words = _once(func.to_tsquery(_ENGLISH, _text("title_words"), type_=TSQUERY))
    weighted = _once(func.to_tsquery(_ENGLISH, _text("weighted"), type_=TSQUERY))
    # The expression index finds the title matches (few: the words must all be in the
    # title); the weighted test decides the segment, the same test in both, so the two
    # segments split the matches exactly. It implies the indexed one, which only narrows.
    # In the title segment the tests on ``search`` are function calls (``ts_match_vq`` is
    # what ``@@`` calls), which no index serves: given ``@@``, a generic plan of the
    # prepared statement ANDed the bitmap of every match in (25 ms) and rechecked it all.
    # Listed unranked (past the cap), the title segment has no indexed test at all, so the
    # plan is the walk of the primary key.
    in_title = func.to_tsvector(_ENGLISH, Question.title).bool_op("@@")(title_words)
    title_weighted = func.ts_match_vq(_search, weighted, type_=Boolean)
    matches = func.ts_match_vq(_search, tsquery, type_=Boolean)
    rank = func.ts_rank(_search, tsquery, type_=Float) + literal(RANKED_FLOOR, Float)
    # Without an excluded word, the indexed test is the other two: ``search`` is the title's
    # words with weight A (the same function and configuration as the index) followed by the
    # body's, so every word or phrase in the title is one in ``search`` with weight A, which
    # is a match. Each of the two tests read and decompressed ``search`` again for every
    # title match: 2.9 ms of 7.7 for the 1,425 of 'convert string' (QA_SEARCH.md).
    ranked_conditions = (in_title, matches, title_weighted) if shape.negated else (in_title,)
    return (
        _Segment(ranked_conditions, rank, RANKED_FLOOR, cap=shape.ranking_cap),
        _Segment((matches, title_weighted), None, TITLE_TIER_FLOOR, when_capped=True),
        _Segment((_search.bool_op("@@")(tsquery), not_(title_weighted)), None, 0.0),
    )


def _websearch() -> ColumnElement[Any]:
    return _once(
        func.websearch_to_tsquery(literal("english", REGCONFIG), _text("websearch"), type_=TSQUERY)
    )


def _once(tsquery: ColumnElement[Any]) -> ColumnElement[Any]:
    """*tsquery* as a scalar subquery: PostgreSQL computes it once per execution (an
    InitPlan), where a call on bound parameters is a function of them that a generic plan
    (which PostgreSQL picks for a prepared statement after five runs) computes again for
    every row it tests: 1,425 title matches of 'convert string' parsed three queries each,
    30 ms instead of 11 (bench/results/QA_SEARCH.md). An index scan takes it as a runtime
    key, so the indexes still serve it."""
    return select(tsquery).scalar_subquery()


def _match(dialect: str) -> ColumnElement[bool]:
    """The full-text condition: every positive term matches, no negated one does."""
    if dialect == "sqlite":
        return _fts_table.bool_op("MATCH")(_text("fts_match"))
    return _search.bool_op("@@")(_websearch())


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
    """A question on a page of results: its line (the columns of :data:`LINE_COLUMNS`, by
    name), its author's display name and its tags, sorted."""

    question: Any
    author_name: str
    tags: list[str]


LINE_COLUMNS = (
    "id",
    "author_id",
    "title",
    "score",
    "answer_count",
    "accepted_answer_id",
    "created_at",
    "last_activity_at",
)
"""What a result line shows of its question; read as columns, not as ORM objects, with the
author's name and the tag names in the same query (no second query for the tags, no
identity map: a page of 30 was most of a worker's time per search)."""


def _line(dialect: str) -> list[ColumnElement[Any]]:
    """The columns of a result line: :data:`LINE_COLUMNS`, ``author_name``, ``tag_ids``."""
    return [
        *(getattr(Question, name) for name in LINE_COLUMNS),
        User.display_name.label("author_name"),
        tag_ids(dialect),
    ]


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
    a keyset range scan like a next page, and the two directions agree on the same rows. A
    page that reaches the end of a segment (relevance: the title matches) goes on into the
    next one (the previous one, read backwards), with one more query.
    """
    position = codec.decode(query, cursor) if cursor is not None else None
    tag_ids = await _tag_ids(session, query.tags)
    if tag_ids is None:
        return SearchPage(found=[], next_cursor=None)
    dialect = session.get_bind().dialect.name
    shape = _Shape.of(dialect, query, len(tag_ids))
    values = _values(dialect, query, tag_ids)
    segments = _segments(shape)
    backward = position is not None and position.before
    start = 0 if position is None else _segment_of(segments, position)
    order = list(reversed(range(start + 1))) if backward else list(range(start, len(segments)))
    # Whether the ranked segment is over its cap: known from a position in either of the
    # title segments, else from reading the ranked one (first, or on demand).
    capped: bool | None = None
    if position is not None and (segments[start].cap or segments[start].when_capped):
        capped = segments[start].when_capped
    rows: list[Any] = []
    for i, index in enumerate(order):
        segment = segments[index]
        want = query.limit + 1 - len(rows)
        if want <= 0:
            break
        read = _Read(shape, index, at=position is not None and i == 0, backward=backward)
        start_at = position if read.at else None
        if segment.cap is not None:
            if capped:
                continue
            found, over = await _read_ranked(session, read, values, start_at, want)
            capped = over if over is not None else capped or False
            rows.extend([] if capped else found)
            continue
        if segment.when_capped:
            if capped is None:
                ranked = next(i for i, s in enumerate(segments) if s.cap is not None)
                first = _Read(shape, ranked, at=False, backward=False)
                _, over = await _read_ranked(session, first, values, None, 1)
                capped = bool(over)
            if not capped:
                continue
        rows.extend(await _read(session, read, values, start_at, want))
    page = rows[: query.limit]
    more = len(rows) > query.limit
    if backward:
        page.reverse()

    def at(row: Any, *, before: bool) -> str:
        row_key = (
            row.sort_key if query.sort is Sort.RELEVANCE else getattr(row, _COLUMN_OF[query.sort])
        )
        return codec.encode(query, Position(row_key, row.id, before))

    # Read backwards, the page the cursor came from follows; read forwards from a cursor, the
    # page it came from precedes. (An empty page links to neither: the pager's first page does.)
    has_next = backward or more
    has_prev = more if backward else position is not None
    next_cursor = at(page[-1], before=False) if page and has_next else None
    prev_cursor = at(page[0], before=True) if page and has_prev else None
    lines = [(row, ids_of(row.tag_ids)) for row in page]
    names = await session_tag_names(session).names(session, (i for _, ids in lines for i in ids))
    found = [
        Found(row, display_name(row.author_name), sorted(names[i] for i in ids))
        for row, ids in lines
    ]
    return SearchPage(found=found, next_cursor=next_cursor, prev_cursor=prev_cursor)


def _segment_of(segments: Sequence[_Segment], position: Position) -> int:
    """The index of the segment that holds *position*."""
    for i, segment in enumerate(segments):
        if segment.floor is None:
            return i
        if isinstance(position.key, int | float) and position.key >= segment.floor:
            return i
    return len(segments) - 1


@dataclass(frozen=True, slots=True)
class _Read:
    """One read of a segment: of a query of *shape*, segment number *index*, from a position
    (*at*) or from its start, in descending order or, *backward*, ascending."""

    shape: _Shape
    index: int
    at: bool
    backward: bool

    @property
    def segment(self) -> _Segment:
        return _segments(self.shape)[self.index]


def _read_values(values: dict[str, Any], position: Position | None, limit: int) -> dict[str, Any]:
    """*values* with the page size and the position's key and id (``after_key``,
    ``after_id``), which :func:`_after` names."""
    bound = dict(values, page_limit=limit)
    if position is not None:
        bound["after_key"], bound["after_id"] = position.key, position.id
    return bound


async def _read(
    session: AsyncSession,
    read: _Read,
    values: dict[str, Any],
    position: Position | None,
    limit: int,
) -> list[Any]:
    """Up to *limit* rows of the segment after *position* (before it, backward: ascending)."""
    statement = _read_statement(read)
    return list((await session.execute(statement, _read_values(values, position, limit))).all())


@functools.cache
def _read_statement(read: _Read) -> Select[*tuple[Any, ...]]:
    shape, segment, backward = read.shape, read.segment, read.backward
    conditions = [*segment.conditions, *_filters(shape)]
    if read.at:
        conditions.append(_after(segment, before=backward, computed=shape.sort is Sort.RELEVANCE))
    if segment.key is None:
        ids = segment.id_column
        order: tuple[Any, ...] = (ids.asc(),) if backward else (ids.desc(),)
    elif backward:
        order = (segment.key.asc(), Question.id.asc())
    else:
        order = (segment.key.desc(), Question.id.desc())
    statement: Select[*tuple[Any, ...]] = select(*_line(shape.dialect)).join(
        User, User.id == Question.author_id
    )
    if shape.full_text and shape.dialect == "sqlite":
        statement = statement.join(_fts, _fts.c.rowid == Question.id)
    if shape.sort is Sort.RELEVANCE:
        statement = statement.add_columns(literal(segment.floor or 0.0, Float).label("sort_key"))
    if conditions:
        statement = statement.where(and_(*conditions))
    return statement.order_by(*order).limit(bindparam("page_limit", type_=Integer))


async def _read_ranked(
    session: AsyncSession,
    read: _Read,
    values: dict[str, Any],
    position: Position | None,
    limit: int,
) -> tuple[list[Any], bool | None]:
    """Up to *limit* rows of the ranked segment after *position* (before it, backward) and
    whether it has more than its cap of rows (None: no row to tell).

    At most cap + 1 candidates are read (the bitmap scan stops there) and ranked on ids and
    ranks alone; only the page's rows are joined to their authors. (Joined first, PostgreSQL
    looked up the author of each of the 1,274 title matches of 'read file' and sorted whole
    rows, to keep 31.)
    """
    statement = _ranked_statement(read)
    bound = _read_values(values, position, limit)
    rows = list((await session.execute(statement, bound)).all())
    if not rows:
        return [], (False if position is None else None)
    cap = read.segment.cap
    assert cap is not None, read
    return rows, rows[0].candidates > cap


@functools.cache
def _ranked_statement(read: _Read) -> Select[*tuple[Any, ...]]:
    segment, backward = read.segment, read.backward
    assert segment.key is not None, segment
    assert segment.cap is not None, segment
    candidates = (
        select(Question.id.label("id"), segment.key.label("rank"))
        .where(and_(*segment.conditions, *_filters(read.shape)))
        .limit(segment.cap + 1)
        .subquery("candidates")
    )
    counted = select(
        candidates.c.id, candidates.c.rank, func.count().over().label("candidates")
    ).subquery("counted")
    rank, ids = counted.c.rank, counted.c.id
    order = (rank.asc(), ids.asc()) if backward else (rank.desc(), ids.desc())
    page = select(counted).order_by(*order).limit(bindparam("page_limit", type_=Integer))
    if read.at:
        bound = bindparam("after_key", type_=Float)
        after_id = bindparam("after_id", type_=Question.id.type)
        if backward:
            page = page.where(or_(rank > bound, and_(rank == bound, ids > after_id)))
        else:
            page = page.where(or_(rank < bound, and_(rank == bound, ids < after_id)))
    ranked = page.subquery("ranked")
    return (
        select(
            *_line(read.shape.dialect),
            ranked.c.rank.label("sort_key"),
            ranked.c.candidates,
        )
        .join(ranked, ranked.c.id == Question.id)
        .join(User, User.id == Question.author_id)
        .order_by(*((ranked.c.rank.asc(), Question.id.asc()) if backward
                    else (ranked.c.rank.desc(), Question.id.desc())))
    )  # fmt: skip


async def count_questions(session: AsyncSession, query: SearchQuery) -> int:
    """How many questions match *query* (all its pages): the result count of a search."""
    tag_ids = await _tag_ids(session, query.tags)
    if tag_ids is None:
        return 0
    dialect = session.get_bind().dialect.name
    statement = _count_statement(_Shape.of(dialect, query, len(tag_ids)))
    return int((await session.scalar(statement, _values(dialect, query, tag_ids))) or 0)


@functools.cache
def _count_statement(shape: _Shape) -> Select[int]:
    statement = select(func.count()).select_from(Question)
    conditions: list[Any] = list(_filters(shape))
    if shape.full_text:
        if shape.dialect == "sqlite":
            statement = statement.join(_fts, _fts.c.rowid == Question.id)
        conditions.append(_match(shape.dialect))
    return statement.where(and_(*conditions)) if conditions else statement


@functools.cache
def _filters(shape: _Shape) -> tuple[ColumnElement[bool], ...]:
    """The conditions of every filter but the full-text one, on the values :func:`_values`
    binds."""
    conditions: list[ColumnElement[bool]] = [
        exists().where(
            question_tags.c.question_id == Question.id,
            question_tags.c.tag_id == bindparam(f"tag_{i}", type_=question_tags.c.tag_id.type),
        )
        for i in range(shape.tags)
    ]
    if shape.created_from:
        conditions.append(Question.created_at >= bindparam("created_from", type_=_MOMENT))
    if shape.created_to:
        conditions.append(Question.created_at < bindparam("created_to", type_=_MOMENT))
    if shape.min_score:
        conditions.append(Question.score >= bindparam("min_score", type_=Integer))
    if shape.answered is not None:
        answers = Question.answer_count
        conditions.append(answers > 0 if shape.answered else answers == 0)
    if shape.author:
        conditions.append(Question.author_id == bindparam("author_id", type_=Question.id.type))
    return tuple(conditions)


_MOMENT = Question.__table__.c.created_at.type


def _after(segment: _Segment, *, before: bool, computed: bool) -> ColumnElement[bool]:
    """Rows of *segment* after the position ``(after_key, after_id)`` in ``key DESC, id
    DESC`` order (*before* it: the rows just before).

    On a column, a row-value comparison, which both databases answer with a range scan of the
    ``(column, id)`` index; a computed rank has no index, so the plain form does as well. In a
    segment of one constant key (relevance's second), the id alone: a range of the primary key.
    """
    after_id = bindparam("after_id", type_=Question.id.type)
    if segment.key is None:
        ids = segment.id_column
        return ids > after_id if before else ids < after_id
    key = segment.key
    bound = bindparam("after_key", type_=key.type)
    if before:
        if computed:
            return or_(key > bound, and_(key == bound, Question.id > after_id))
        return tuple_(key, Question.id) > tuple_(bound, after_id)
    if computed:
        return or_(key < bound, and_(key == bound, Question.id < after_id))
    return tuple_(key, Question.id) < tuple_(bound, after_id)
