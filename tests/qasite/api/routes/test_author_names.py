"""Authors' display names in the outputs and the events that create posts (api/outputs.py,
search.py, routes/inbox.py), with a number of queries that does not grow with the rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, update

from qasite.domain.models import User as UserRow
from qasite.domain.names import UNNAMED
from tests.qasite.support import QA, User


@contextmanager
def counted_queries(qa: QA) -> Iterator[list[str]]:
    """The SELECT statements run while the block runs (not a connection's set-up, nor the
    relay's polls of the outbox, which runs beside the requests)."""
    statements: list[str] = []
    engine = qa.context.db.engine.sync_engine

    def record(*args: Any) -> None:
        statement: str = args[2]
        relay = "outbox" in statement or "advisory" in statement
        if statement.lstrip().upper().startswith("SELECT") and not relay:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def comment(qa: QA, user: User, post: str, body: str = "Which version?") -> dict[str, Any]:
    r = await qa.client.post(f"/api/{post}/comments", json={"body": body}, headers=user.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_the_question_page_names_the_authors_of_the_question_answers_and_comments(
    qa: QA,
) -> None:
    ada = await qa.signup(name="Ada Lovelace")
    bob = await qa.signup(name="Bob")
    q = await qa.ask(ada)
    assert q["author_name"] == "Ada Lovelace"
    a = await qa.answer(bob, q["id"])
    assert a["author_name"] == "Bob"
    assert (await comment(qa, bob, f"questions/{q['id']}"))["author_name"] == "Bob"
    assert (await comment(qa, ada, f"answers/{a['id']}"))["author_name"] == "Ada Lovelace"

    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["author_name"] == "Ada Lovelace"
    [answer] = page["answers"]
    assert answer["author_name"] == "Bob"
    assert [c["author_name"] for c in answer["comments"]] == ["Ada Lovelace"]
    assert [c["author_name"] for c in page["comments"]] == ["Bob"]


async def test_edits_and_accepting_keep_the_names(qa: QA) -> None:
    ada = await qa.signup(name="Ada")
    bob = await qa.signup(name="Bob")
    q = await qa.ask(ada)
    a = await qa.answer(bob, q["id"])
    c = await comment(qa, bob, f"questions/{q['id']}")
    r = await qa.client.patch(f"/api/answers/{a['id']}", json={"body": "x"}, headers=bob.headers)
    assert r.json()["author_name"] == "Bob"
    r = await qa.client.patch(f"/api/comments/{c['id']}", json={"body": "y"}, headers=bob.headers)
    assert r.json()["author_name"] == "Bob"
    r = await qa.client.post(f"/api/answers/{a['id']}/accept", headers=ada.headers)
    assert (r.json()["author_name"], r.json()["answers"][0]["author_name"]) == ("Ada", "Bob")
    r = await qa.client.patch(f"/api/questions/{q['id']}", json={"body": "z"}, headers=ada.headers)
    assert r.json()["answers"][0]["author_name"] == "Bob"


async def test_the_list_and_search_name_each_questions_author(qa: QA) -> None:
    ada = await qa.signup(name="Ada")
    bob = await qa.signup(name="Bob")
    await qa.ask(ada, title="Reading files in python")
    await qa.ask(bob, title="Writing files in rust")
    items = (await qa.client.get("/api/questions")).json()["items"]
    assert [i["author_name"] for i in items] == ["Bob", "Ada"]
    found = (await qa.client.get("/api/questions", params={"q": "reading"})).json()["items"]
    assert [i["author_name"] for i in found] == ["Ada"]


async def test_an_empty_display_name_is_shown_as_a_neutral_label(qa: QA) -> None:
    ada = await qa.signup(name="Ada")
    q = await qa.ask(ada)
    async with qa.context.db.write() as session:
        await session.execute(update(UserRow).where(UserRow.id == ada.id).values(display_name=""))
    assert (await qa.client.get(f"/api/questions/{q['id']}")).json()["author_name"] == UNNAMED
    [item] = (await qa.client.get("/api/questions")).json()["items"]
    assert item["author_name"] == UNNAMED


async def test_events_that_create_posts_carry_the_authors_name(qa: QA) -> None:
    ada = await qa.signup(name="Ada")
    bob = await qa.signup(name="Bob")
    q = await qa.ask(ada, tags=["python"])
    await qa.answer(bob, q["id"])
    await comment(qa, ada, f"questions/{q['id']}")
    await qa.settle()
    [asked] = qa.sink.of_type("questions:new", "question")
    [tagged] = qa.sink.of_type("tag:python", "question")
    assert asked["author_name"] == tagged["author_name"] == "Ada"
    channel = f"question:{q['id']}"
    [answered] = qa.sink.of_type(channel, "answer")
    assert answered["answer"]["author_name"] == "Bob"
    [commented] = qa.sink.of_type(channel, "comment")
    assert commented["comment"]["author_name"] == "Ada"


async def test_inbox_items_name_their_actor(qa: QA) -> None:
    ada = await qa.signup(name="Ada")
    bob = await qa.signup(name="Bob")
    carol = await qa.signup(name="Carol")
    q = await qa.ask(ada)
    await qa.answer(bob, q["id"])
    await comment(qa, carol, f"questions/{q['id']}")
    items = (await qa.client.get("/api/inbox", headers=ada.headers)).json()["items"]
    assert [(i["kind"], i["actor_name"]) for i in items] == [
        ("comment", "Carol"),
        ("answer", "Bob"),
    ]


async def _queries_to_read(qa: QA, path: str, headers: dict[str, str] | None = None) -> int:
    await qa.settle()
    with counted_queries(qa) as statements:
        r = await qa.client.get(path, headers=headers)
        assert r.status_code == 200, r.text
    return len(statements)


async def test_the_number_of_queries_does_not_grow_with_the_posts_and_their_authors(
    qa: QA,
) -> None:
    users = [await qa.signup(name=f"User {n}") for n in range(4)]
    q = await qa.ask(users[0])
    a = await qa.answer(users[1], q["id"])
    await comment(qa, users[2], f"answers/{a['id']}")
    few = [
        await _queries_to_read(qa, f"/api/questions/{q['id']}"),
        await _queries_to_read(qa, "/api/questions"),
        await _queries_to_read(qa, "/api/inbox", users[0].headers),
    ]
    for user in users[1:]:
        await qa.ask(user)
        answer = await qa.answer(user, q["id"])
        await comment(qa, user, f"answers/{answer['id']}")
        await comment(qa, user, f"questions/{q['id']}")
    many = [
        await _queries_to_read(qa, f"/api/questions/{q['id']}"),
        await _queries_to_read(qa, "/api/questions"),
        await _queries_to_read(qa, "/api/inbox", users[0].headers),
    ]
    # Not one more query for the new posts; one fewer for the list, whose tag names were read
    # the first time (qasite/domain/tag_names.py).
    assert many == [few[0], few[1] - 1, few[2]], (few, many)
