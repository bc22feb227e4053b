"""Searching and listing questions (qasite/domain/search.py, GET /api/questions), on both databases.

Most questions here are written straight into the database so that their times, scores and
answer counts are chosen by the test; the full-text index follows them through the triggers
(SQLite) or the generated column (PostgreSQL), as it does for questions asked over HTTP.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from qasite.core.settings import Settings
from qasite.domain.models import Question, User
from qasite.domain.posts import tags_named
from qasite.domain.search import (
    CursorCodec,
    SearchQuery,
    Sort,
    Term,
    fts5_expression,
    parse_terms,
    websearch_text,
)
from tests.qasite.support import QA, error_of, running_qa

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_titles = itertools.count(1)


async def author(qa: QA) -> int:
    async with qa.context.db.write() as session:
        user = User(email="author@example.org", display_name="A", password_hash="x", verified=True)
        session.add(user)
        await session.flush()
        return user.id


async def put(
    qa: QA,
    author_id: int,
    *,
    title: str | None = None,
    body: str = "some body text",
    tags: tuple[str, ...] = ("python",),
    day: float = 0,
    score: int = 0,
    answers: int = 0,
    active_day: float | None = None,
) -> int:
    """A question created *day* days after T0, with the given score and answer count."""
    created = T0 + dt.timedelta(days=day)
    async with qa.context.db.write() as session:
        question = Question(
            author_id=author_id,
            title=title or f"Question number {next(_titles)}",
            body_md=body,
            body_html=f"<p>{body}</p>",
            score=score,
            answer_count=answers,
            created_at=created,
            updated_at=created,
            last_activity_at=T0 + dt.timedelta(days=day if active_day is None else active_day),
            tags=await tags_named(session, list(tags)),
        )
        session.add(question)
        await session.flush()
        return question.id


async def ids(qa: QA, **params: Any) -> list[int]:
    """The ids of the first page for *params* (asserting a 200)."""
    r = await qa.client.get("/api/questions", params=params)
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


async def all_pages(qa: QA, **params: Any) -> list[list[int]]:
    """Every page for *params*, following next_cursor to the end."""
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        r = await qa.client.get("/api/questions", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "cursor never ends"


async def assert_invalid(qa: QA, mentions: str, **params: Any) -> None:
    r = await qa.client.get("/api/questions", params=params)
    assert r.status_code == 422, r.text
    assert mentions in error_of(r)["message"]


# --- the query language (pure) -------------------------------------------------------------


def test_a_query_is_reduced_to_words_phrases_and_exclusions() -> None:
    # A token with punctuation inside becomes a phrase of its words, as the engines index it.
    assert parse_terms('Read "text file" -binary NEAR(x) c++ *: read_me') == [
        Term(("read",)),
        Term(("text", "file")),
        Term(("binary",), negated=True),
        Term(("near", "x")),
        Term(("c",)),
        Term(("read_me",)),
    ]


def test_engine_syntax_in_a_query_is_quoted_away() -> None:
    terms = parse_terms('or AND "unclosed -not')
    assert fts5_expression(terms) == '"or" AND "and" AND "unclosed not"'
    assert websearch_text(parse_terms("a -b")) == '"a" -"b"'
    assert fts5_expression(parse_terms("a -b -c")) == '("a") NOT ("b" OR "c")'


def test_relevance_is_the_default_sort_only_with_a_query() -> None:
    assert SearchQuery.build(text="x").sort is Sort.RELEVANCE
    assert SearchQuery.build().sort is Sort.NEWEST


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    from qasite.domain.search import BadCursor, Position

    query = SearchQuery.build()
    cursor = CursorCodec("one").encode(query, Position(T0, 7))
    assert CursorCodec("one").decode(query, cursor) == Position(T0, 7)
    with pytest.raises(BadCursor):
        CursorCodec("two").decode(query, cursor)


# --- filters ------------------------------------------------------------------------------


async def test_the_list_is_newest_first_by_default(qa: QA) -> None:
    a = await author(qa)
    old, new, mid = [await put(qa, a, day=d) for d in (1, 3, 2)]
    assert await ids(qa) == [new, mid, old]


async def test_tag_filter_keeps_questions_with_every_given_tag(qa: QA) -> None:
    a = await author(qa)
    py = await put(qa, a, tags=("python",), day=1)
    both = await put(qa, a, tags=("python", "sqlite"), day=2)
    await put(qa, a, tags=("sqlite",), day=3)
    assert await ids(qa, tag="python") == [both, py]
    assert await ids(qa, tag=["python", "sqlite"]) == [both]
    assert await ids(qa, tag="PYTHON") == [both, py]
    assert await ids(qa, tag="no-such-tag") == []


async def test_date_range_includes_its_start_and_excludes_its_end(qa: QA) -> None:
    a = await author(qa)
    q1, q2, q3 = [await put(qa, a, day=d) for d in (1, 2, 3)]
    start, end = (T0 + dt.timedelta(days=1)).isoformat(), (T0 + dt.timedelta(days=3)).isoformat()
    assert await ids(qa, created_from=start, created_to=end) == [q2, q1]
    assert await ids(qa, created_from=end) == [q3]
    assert await ids(qa, created_to="2026-01-02T00:00:00") == [], "naive times are UTC"
    assert await ids(qa, created_to="2026-01-02T00:00:01") == [q1]


async def test_min_score_keeps_questions_at_or_above_it(qa: QA) -> None:
    a = await author(qa)
    low, high, neg = [await put(qa, a, score=s, day=d) for d, s in ((1, 1), (2, 5), (3, -2))]
    assert await ids(qa, min_score=1) == [high, low]
    assert await ids(qa, min_score=-5) == [neg, high, low]
    assert await ids(qa, min_score=6) == []


async def test_answered_means_at_least_one_answer(qa: QA) -> None:
    a = await author(qa)
    none = await put(qa, a, answers=0, day=1)
    some = await put(qa, a, answers=2, day=2)
    assert await ids(qa, answered="true") == [some]
    assert await ids(qa, answered="false") == [none]


async def test_answering_over_http_moves_a_question_to_answered(qa: QA) -> None:
    asker, helper = await qa.signup(), await qa.signup()
    question = await qa.ask(asker)
    assert await ids(qa, answered="false") == [question["id"]]
    await qa.answer(helper, question["id"])
    assert await ids(qa, answered="false") == []
    assert await ids(qa, answered="true") == [question["id"]]


async def test_filters_combine(qa: QA) -> None:
    a = await author(qa)
    hit = await put(qa, a, title="Parsing dates in python", tags=("python",), score=3, day=5)
    await put(qa, a, title="Parsing dates in rust", tags=("rust",), score=3, day=5)
    await put(qa, a, title="Parsing dates in python again", tags=("python",), score=0, day=5)
    await put(qa, a, title="Parsing dates in python, old", tags=("python",), score=3, day=1)
    params = {"q": "parsing dates", "tag": "python", "min_score": 1,
              "created_from": "2026-01-03"}  # fmt: skip
    assert await ids(qa, **params) == [hit]


# --- sorts --------------------------------------------------------------------------------


async def test_votes_sort_is_by_score_then_newest_id(qa: QA) -> None:
    a = await author(qa)
    one, five, other_five = [await put(qa, a, score=s) for s in (1, 5, 5)]
    assert await ids(qa, sort="votes") == [other_five, five, one]


async def test_activity_sort_is_by_last_activity(qa: QA) -> None:
    a = await author(qa)
    stale = await put(qa, a, day=5, active_day=5)
    revived = await put(qa, a, day=1, active_day=9)
    fresh = await put(qa, a, day=7, active_day=7)
    assert await ids(qa, sort="activity") == [revived, fresh, stale]


async def test_activity_sort_follows_a_new_answer(qa: QA) -> None:
    asker, helper = await qa.signup(), await qa.signup()
    first = await qa.ask(asker, title="The first question")
    second = await qa.ask(asker, title="The second question")
    assert await ids(qa, sort="activity") == [second["id"], first["id"]]
    await qa.answer(helper, first["id"])
    assert await ids(qa, sort="activity") == [first["id"], second["id"]]


# --- full text ----------------------------------------------------------------------------


async def test_every_word_of_a_query_must_match_in_title_or_body(qa: QA) -> None:
    a = await author(qa)
    title_hit = await put(qa, a, title="Reading a large file lazily", body="with generators")
    body_hit = await put(qa, a, title="Memory trouble", body="reading a large file at once")
    await put(qa, a, title="Reading a small thing", body="nothing else")
    assert sorted(await ids(qa, q="large file reading")) == sorted([title_hit, body_hit])
    assert await ids(qa, q="generators") == [title_hit]
    assert await ids(qa, q="absent-word-xyz") == []


async def test_words_are_stemmed_on_both_databases(qa: QA) -> None:
    a = await author(qa)
    hit = await put(qa, a, title="Connecting to databases", body="connection refused")
    assert await ids(qa, q="database connect") == [hit]


async def test_stop_words_match_on_sqlite_and_are_ignored_on_postgresql(qa: QA) -> None:
    a = await author(qa)
    hit = await put(qa, a, title="How to do the thing", body="plain")
    found = await ids(qa, q="how the")
    # PostgreSQL's english configuration drops stop words: nothing is left to match.
    assert found == ([] if qa.context.db.dialect == "postgresql" else [hit])


async def test_phrases_and_exclusions(qa: QA) -> None:
    a = await author(qa)
    exact = await put(qa, a, title="Unit tests for a parser", body="plain body")
    reversed_ = await put(qa, a, title="Tests of every unit", body="plain body")
    assert sorted(await ids(qa, q="unit tests")) == sorted([exact, reversed_])
    assert await ids(qa, q='"unit tests"') == [exact]
    assert await ids(qa, q="unit tests -parser") == [reversed_]


async def test_relevance_ranks_a_title_match_above_a_body_match(qa: QA) -> None:
    a = await author(qa)
    in_body = await put(qa, a, title="Something else entirely", body="a word about sockets here")
    in_title = await put(qa, a, title="Sockets and timeouts", body="nothing related at all")
    assert await ids(qa, q="sockets") == [in_title, in_body]
    assert await ids(qa, q="sockets", sort="newest") == [in_title, in_body]
    assert await ids(qa, q="sockets", sort="votes") == [in_title, in_body]


async def test_title_matches_are_ranked_on_postgresql_and_newest_first_on_sqlite(qa: QA) -> None:
    a = await author(qa)
    # The older one first: only the rank, not the newest-first tie-break, can put it on top.
    thrice = await put(qa, a, title="Redis queues", body="redis redis redis keeps coming up")
    once = await put(qa, a, title="Redis queues", body="redis is mentioned once among words")
    await put(qa, a, title="About queues", body="nothing to see")
    found = await ids(qa, q="redis queues")
    assert found == ([thrice, once] if qa.context.db.dialect == "postgresql" else [once, thrice])


async def test_relevance_puts_every_title_match_first_then_the_rest_newest_first(qa: QA) -> None:
    a = await author(qa)
    title_old = await put(qa, a, title="Socket timeout in a loop", body="plain", day=0)
    body_many = await put(qa, a, title="Network trouble", body="socket timeout " * 5, day=1)
    half = await put(qa, a, title="A socket question", body="with a timeout", day=2)
    body_new = await put(qa, a, title="Other words", body="socket then timeout", day=3)
    await put(qa, a, title="Socket only", body="nothing else", day=4)
    # Title matches ranked first however old; the others (words partly or only in the body)
    # newest first, however often they name the words.
    assert await ids(qa, q="socket timeout") == [title_old, body_new, half, body_many]
    assert await ids(qa, q="socket timeout -loop") == [body_new, half, body_many]
    assert await ids(qa, q='"socket timeout"') == [title_old, body_many]
    assert await ids(qa, q="socket timeout", min_score=0, tag="python") == [
        title_old, body_new, half, body_many
    ]  # fmt: skip


async def test_a_phrase_that_runs_from_the_title_into_the_body_is_not_a_title_match(
    qa: QA,
) -> None:
    a = await author(qa)
    across = await put(qa, a, title="How to convert", body="string values", day=0)
    in_title = await put(qa, a, title="Convert string values", body="plain", day=1)
    # On PostgreSQL the body's words follow the title's in ``search``, one position on, so
    # the phrase matches there, after the title match; an FTS5 phrase stays in one column.
    postgresql = qa.context.db.dialect == "postgresql"
    assert await ids(qa, q='"convert string"') == ([in_title, across] if postgresql else [in_title])
    assert await ids(qa, q="convert string") == [in_title, across]


async def test_the_index_follows_an_edit_and_a_delete(qa: QA) -> None:
    user = await qa.signup()
    question = await qa.ask(user, title="Original wording here", body="alpha bravo")
    assert await ids(qa, q="alpha") == [question["id"]]
    r = await qa.client.patch(f"/api/questions/{question['id']}",
                              json={"title": "Reworded title", "body": "charlie delta"},
                              headers=user.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert await ids(qa, q="alpha") == []
    assert await ids(qa, q="original") == []
    assert await ids(qa, q="charlie reworded") == [question["id"]]
    r = await qa.client.delete(f"/api/questions/{question['id']}", headers=user.headers)
    assert r.status_code == 204
    assert await ids(qa, q="charlie") == []


async def test_a_vote_does_not_disturb_the_index(qa: QA) -> None:
    asker, voter = await qa.signup(), await qa.signup()
    question = await qa.ask(asker, title="Voting keeps search", body="echo foxtrot")
    r = await qa.client.put(f"/api/questions/{question['id']}/vote", json={"value": 1},
                             headers=voter.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert await ids(qa, q="foxtrot", min_score=1) == [question["id"]]


# --- pagination ---------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["newest", "votes", "activity"])
async def test_pages_cover_every_question_once_despite_ties(qa: QA, sort: str) -> None:
    a = await author(qa)
    # Scores, creation and activity days repeat, so every sort has long runs of ties.
    made = [
        await put(qa, a, score=i % 3, day=i % 4, active_day=i % 2, body="common words")
        for i in range(23)
    ]
    pages = await all_pages(qa, sort=sort, limit=5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    flat = [i for page in pages for i in page]
    assert sorted(flat) == sorted(made)
    assert flat == await ids(qa, sort=sort, limit=100)


async def test_relevance_pages_cover_every_match_once_despite_ties(qa: QA) -> None:
    a = await author(qa)
    made = [await put(qa, a, title="Same title", body="kilo " * (i % 3 + 1)) for i in range(12)]
    await put(qa, a, title="Unrelated", body="lima")
    pages = await all_pages(qa, q="kilo", limit=5)
    flat = [i for page in pages for i in page]
    assert sorted(flat) == sorted(made)
    assert flat == await ids(qa, q="kilo", limit=100)


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_relevance_pages_run_through_title_matches_into_the_rest(qa: QA, limit: int) -> None:
    a = await author(qa)
    in_title = [
        await put(qa, a, title="Kilo " * (i % 2 + 1) + "title", body="kilo " * (i % 3 + 1))
        for i in range(5)
    ]
    in_body = [
        await put(qa, a, title="Another title", body="kilo " * (i % 2 + 1)) for i in range(4)
    ]
    pages = await all_pages(qa, q="kilo", limit=limit)
    flat = [i for page in pages for i in page]
    assert all(len(page) == limit for page in pages[:-1])
    assert sorted(flat[:5]) == sorted(in_title)
    assert flat[5:] == in_body[::-1]
    assert flat == await ids(qa, q="kilo", limit=100)
    # Backwards from the last page, through the boundary, to the first.
    page = await page_at(qa, None, q="kilo", limit=limit)
    while page["next_cursor"] is not None:
        page = await page_at(qa, page["next_cursor"], q="kilo", limit=limit)
    back = [ids_of(page)]
    while page["prev_cursor"] is not None:
        page = await page_at(qa, page["prev_cursor"], q="kilo", limit=limit)
        back.append(ids_of(page))
    assert back[::-1] == pages


@pytest.mark.parametrize("limit", [1, 2, 4])
async def test_past_the_ranking_cap_title_matches_are_listed_newest_first(
    qa: QA, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qasite.domain.search.RANKED_TITLE_MATCHES_MAX", 3)
    a = await author(qa)
    # Oldest first with the most occurrences: ranked, it would come first.
    in_title = [
        await put(qa, a, title="Kilo title", body="kilo " * (5 - i), day=i) for i in range(5)
    ]
    in_body = [await put(qa, a, title="Another title", body="kilo", day=9) for _ in range(3)]
    expected = in_title[::-1] + in_body[::-1]
    assert await ids(qa, q="kilo", limit=100) == expected
    pages = await all_pages(qa, q="kilo", limit=limit)
    assert [i for page in pages for i in page] == expected
    page = await page_at(qa, None, q="kilo", limit=limit)
    while page["next_cursor"] is not None:
        page = await page_at(qa, page["next_cursor"], q="kilo", limit=limit)
    back = [ids_of(page)]
    while page["prev_cursor"] is not None:
        page = await page_at(qa, page["prev_cursor"], q="kilo", limit=limit)
        back.append(ids_of(page))
    assert back[::-1] == pages


async def test_at_the_ranking_cap_title_matches_are_still_ranked_on_postgresql(
    qa: QA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("qasite.domain.search.RANKED_TITLE_MATCHES_MAX", 3)
    a = await author(qa)
    made = [await put(qa, a, title="Kilo title", body="kilo " * (3 - i), day=i) for i in range(3)]
    found = await ids(qa, q="kilo")
    assert found == (made if qa.context.db.dialect == "postgresql" else made[::-1])


async def page_at(qa: QA, cursor: str | None, **params: Any) -> dict[str, Any]:
    """The page *cursor* leads to (the first page for None), as the API answers it."""
    r = await qa.client.get(
        "/api/questions", params=dict(params, **({"cursor": cursor} if cursor else {}))
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ids_of(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


@pytest.mark.parametrize(
    "params", [{"sort": "newest"}, {"sort": "votes"}, {"sort": "activity"}, {"q": "kilo"}]
)
async def test_previous_pages_are_the_same_pages_read_back_to_the_first(
    qa: QA, params: dict[str, Any]
) -> None:
    a = await author(qa)
    for i in range(13):  # ties in every sort, as above
        await put(qa, a, score=i % 3, day=i % 4, active_day=i % 2, body="kilo " * (i % 2 + 1))
    params["limit"] = 4
    forward = await all_pages(qa, **params)
    assert [len(p) for p in forward] == [4, 4, 4, 1]
    page = await page_at(qa, None, **params)
    assert page["prev_cursor"] is None
    while page["next_cursor"] is not None:
        page = await page_at(qa, page["next_cursor"], **params)

    back: list[list[int]] = []
    while page["prev_cursor"] is not None:
        page = await page_at(qa, page["prev_cursor"], **params)
        back.append(ids_of(page))
    assert back == forward[-2::-1]

    # A page reached backwards links forwards again, to the page after it.
    assert ids_of(await page_at(qa, page["next_cursor"], **params)) == forward[1]


async def test_a_question_added_between_pages_neither_repeats_nor_skips_older_ones(qa: QA) -> None:
    a = await author(qa)
    made = [await put(qa, a, day=d) for d in range(6)]
    r = await qa.client.get("/api/questions", params={"limit": 3})
    first = [item["id"] for item in r.json()["items"]]
    await put(qa, a, day=10)
    r = await qa.client.get(
        "/api/questions", params={"limit": 3, "cursor": r.json()["next_cursor"]}
    )
    second = [item["id"] for item in r.json()["items"]]
    assert first + second == made[::-1]


# --- bad input ----------------------------------------------------------------------------


async def test_bad_parameters_are_422_with_a_message(qa: QA) -> None:
    await assert_invalid(qa, "limit", limit=0)
    await assert_invalid(qa, "limit", limit=101)
    await assert_invalid(qa, "sort", sort="random")
    await assert_invalid(qa, "relevance needs", sort="relevance")
    await assert_invalid(qa, "at least one word", q="?!*")
    await assert_invalid(qa, "at least one word", q="-only -negative")
    await assert_invalid(qa, "q", q="x" * 201)
    await assert_invalid(qa, "tag", tag="not a tag!")
    await assert_invalid(qa, "tag", tag=["a", "b", "c", "d", "e", "f"])
    await assert_invalid(qa, "created_from", created_from="yesterday")
    await assert_invalid(qa, "ISO 8601", created_to="0.5")  # not Unix time (schemathesis)
    await assert_invalid(qa, "ISO 8601", created_from="1700000000")
    await assert_invalid(qa, "earlier", created_from="2026-02-01", created_to="2026-01-01")
    await assert_invalid(qa, "min_score", min_score="high")
    await assert_invalid(qa, "min_score", min_score=2**40)
    await assert_invalid(qa, "answered", answered="maybe")
    await assert_invalid(qa, "NUL", q="a\x00b")


async def test_a_cursor_that_is_not_ours_is_422(qa: QA) -> None:
    a = await author(qa)
    for day in range(3):
        await put(qa, a, day=day)
    cursor = (await qa.client.get("/api/questions", params={"limit": 1})).json()["next_cursor"]
    body, _, mac = cursor.partition(".")
    await assert_invalid(qa, "not a cursor", cursor="garbage!")
    await assert_invalid(qa, "not a cursor", cursor="")
    await assert_invalid(qa, "altered", cursor=body + "." + mac[::-1])
    tampered = body[:-4] + ("A" if body[-4] != "A" else "B") + body[-3:]
    await assert_invalid(qa, "altered", cursor=tampered + "." + mac)
    await assert_invalid(qa, "another sort", cursor=cursor, sort="votes")
    await assert_invalid(qa, "other filters", cursor=cursor, tag="python")
    r = await qa.client.get("/api/questions", params={"cursor": cursor, "limit": 1})
    assert r.status_code == 200


def _per_row_text(node: dict[str, Any]) -> str:
    """What a plan node and its children compute, except in InitPlans (computed once)."""
    if node.get("Parent Relationship") == "InitPlan":
        return ""
    own = json.dumps({k: v for k, v in node.items() if k != "Plans"})
    return own + "".join(_per_row_text(child) for child in node.get("Plans", []))


@pytest.mark.parametrize(
    "params", [{"q": "kilo"}, {"q": "nowhere kilo"}, {"q": "kilo -lima", "sort": "votes"}]
)
async def test_a_generic_plan_parses_the_query_once_not_once_per_row(
    settings: Settings, database_url: str, params: dict[str, str]
) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("SQLite has no generic plans: FTS5 takes the MATCH text once")
    async with running_qa(settings, migrate_on_start=False) as qa:
        await _assert_parsed_once(qa, params)


async def _assert_parsed_once(qa: QA, params: dict[str, str]) -> None:
    a = await author(qa)
    await put(qa, a, title="Kilo title", body="kilo")
    await put(qa, a, title="Another title", body="kilo nowhere")
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "tsquery" in statement:
            statements.append((statement, parameters))

    engine = qa.context.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert await ids(qa, **params)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert statements
    url = qa.context.db.engine.url.set(drivername="postgresql")
    driver = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        # What PostgreSQL picks for a prepared statement after five runs of it.
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        for statement, parameters in statements:
            # EXPLAIN of the statement itself would plan it with the values as constants;
            # EXECUTE of a prepared one takes literals only.
            types = (await driver.prepare(statement)).get_parameters()
            args = ", ".join(
                "'" + str(value).replace("'", "''") + f"'::{kind.name}"
                for value, kind in zip(parameters, types, strict=True)
            )
            await driver.execute("PREPARE probe AS " + statement)
            explained = await driver.fetchval(
                f"EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE probe({args})"
            )
            await driver.execute("DEALLOCATE probe")
            (plan,) = json.loads(explained)
            assert "to_tsquery" not in _per_row_text(plan["Plan"]), statement
    finally:
        await driver.close()
