"""Bulk inserts that read the same on SQLite and PostgreSQL: the dialect's upsert, IN lists in chunks,
plain rows straight to the driver, and inserts that return what they assigned.

Writes are Core executemany statements per table per batch, never ORM objects per row: storing is measured
against the time lxml takes merely to walk the file. On PostgreSQL a batch goes as one statement over
arrays (``unnest``), one round trip instead of one per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from db.pubmed_rows import CHILD_COLUMNS

IN_CHUNK = 500  # ids per IN (...) list, well under SQLite's and PostgreSQL's parameter limits


def dialect_insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in slices of ``size``, one IN (...) list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_tuples(conn: Connection, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert plain rows of a child table (tuples in the order of :data:`db.pubmed_rows.CHILD_COLUMNS`),
    straight to the driver.

    Child rows hold only text, integers and booleans, which sqlite3 and psycopg take as they are, so
    SQLAlchemy's per-row parameter processing (most of the time of a Core executemany on SQLite) is
    skipped; the statement is still compiled by SQLAlchemy for the dialect and runs in the same
    transaction, seen by the engine's events like any other. SQLite takes one executemany (a loop in C);
    PostgreSQL takes multi-row VALUES statements, one network round trip per chunk instead of per row.
    """
    columns = CHILD_COLUMNS[table.name]
    if conn.dialect.name == "postgresql":
        insert_values_chunks(conn, table, columns, rows)
        return
    compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
    params: list[Any]
    if compiled.positional:
        order = [columns.index(name) for name in compiled.positiontup or ()]
        params = rows if order == list(range(len(columns))) else [tuple(r[i] for i in order) for r in rows]
    else:
        params = [dict(zip(columns, r, strict=True)) for r in rows]
    conn.exec_driver_sql(compiled.string, params)


def insert_values_chunks(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """PostgreSQL: one INSERT ... SELECT FROM unnest(array per column) for all the rows.

    The statement stays short and the same for every batch (psycopg prepares it once), and each column
    travels as one array parameter instead of one parameter per value.
    """
    arrays = ", ".join(f"%s::{table.c[name].type.compile(dialect=conn.dialect)}[]" for name in columns)
    # Table and column names come from the models, never from input; the values are bound parameters.
    statement = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608
    conn.exec_driver_sql(statement, tuple(list(column) for column in zip(*rows, strict=True)))


def insert_returning(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Insert rows (dicts with the same keys) and return the ``returning`` columns of each.

    PostgreSQL takes them as one INSERT ... SELECT FROM unnest(...) RETURNING (SQLAlchemy's multi-row
    VALUES costs psycopg a parse of a statement with one placeholder per value, per batch); SQLite takes
    SQLAlchemy's own insert, whose type processing (timestamps) it needs.
    """
    if conn.dialect.name != "postgresql":
        query = sa.insert(table).returning(*(table.c[name] for name in returning))
        return [tuple(row) for row in conn.execute(query, rows)]
    columns = list(rows[0])
    values = [[pg_value(row[name]) for row in rows] for name in columns]
    arrays = ", ".join(f"%s::{table.c[name].type.compile(dialect=conn.dialect)}[]" for name in columns)
    # Names come from the models, never from input; the values are bound parameters.
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608
        f" RETURNING {', '.join(returning)}"
    )
    return [tuple(row) for row in conn.exec_driver_sql(statement, tuple(values))]


def pg_value(value: Any) -> Any:
    """What UtcDateTime's bind processing does (the one type here that has any), for the raw driver."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        return value.astimezone(UTC)
    return value
