"""Loading a seed into SQLite: ``executemany`` in one transaction per batch, foreign keys off.

A large seed drops the plain indexes of the big tables and the full-text triggers first and
builds them again at the end (``questions_fts`` in one ``rebuild``), which is faster than
maintaining them row by row.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator

from qasite.seed.generator import (
    COLUMNS,
    ID_TABLES,
    REBUILT_TABLES,
    TIME_COLUMNS,
    Generator,
    Row,
    Start,
    pipeline,
)


def sqlite_start(path: str) -> Start:
    """Where new ids start: past the largest row and past ``sqlite_sequence`` (AUTOINCREMENT),
    as :func:`qasite.seed.postgres.pg_start` does."""
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

    A large seed (:attr:`SeedPlan.rebuilds_indexes`) drops the plain indexes and the
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
        if generator.plan.rebuilds_indexes:
            dropped = _sqlite_drop_for_load(conn)
        try:
            for batch in pipeline(generator):
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
