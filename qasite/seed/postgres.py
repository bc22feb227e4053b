"""Loading a seed into PostgreSQL: binary ``COPY``, on two connections at once when foreign-key
checks can be switched off (``session_replication_role = replica``, superuser only); otherwise
on one connection, with the accepted answers linked by one ``UPDATE`` at the end.

A large seed drops the plain indexes of the big tables first and builds them again at the end;
the id sequences are moved past the new rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from qasite.seed.generator import (
    COLUMNS,
    ID_TABLES,
    REBUILT_TABLES,
    Batch,
    Generator,
    SeedPlan,
    Start,
    pipeline,
)

log = logging.getLogger(__name__)


async def pg_start(conn: Any) -> Start:
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
        start = await pg_start(conn)
        generator = Generator(plan, start, password_hash)
        try:
            await conn.execute("SET session_replication_role = replica")
            second = await asyncpg.connect(url)
            await second.execute("SET session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError:
            log.info("not a superuser: foreign keys are checked row by row (slower)")
        dropped = await _drop_plain_indexes(conn) if plan.rebuilds_indexes else []
        try:
            conns = [conn] if second is None else [conn, second]
            totals = await _pg_copy(conns, pipeline(generator))
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
