"""Bulk inserts that read the same on SQLite and PostgreSQL: the dialect's upsert, IN lists in chunks,
plain rows straight to the driver, and inserts that return what they assigned.

Writes are Core executemany statements per table per batch, never ORM objects per row: storing is measured
against the time lxml takes merely to walk the file. On PostgreSQL a batch goes through COPY
(:mod:`db.pg_copy`): the rows streamed into the table, or into a staging table and merged from there by
one statement, instead of a statement per row or a parse of one placeholder per value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from db import pg_copy

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


def insert_tuples(
    conn: Connection, table: sa.Table, rows: list[tuple[Any, ...]], columns: Sequence[str]
) -> None:
    """Insert plain rows of a child table (tuples of ``columns``, as :data:`db.pubmed_rows.CHILD_COLUMNS`
    gives them), straight to the driver.

    Child rows hold only text, integers and booleans, which sqlite3 and psycopg take as they are, so
    SQLAlchemy's per-row parameter processing (most of the time of a Core executemany on SQLite) is
    skipped; the statement is still compiled by SQLAlchemy for the dialect and runs in the same
    transaction, seen by the engine's events like any other. SQLite takes one executemany (a loop in C);
    PostgreSQL one COPY.
    """
    columns = tuple(columns)
    if conn.dialect.name == "postgresql":
        pg_copy.insert_tuples(conn, table, rows, columns)
        return
    compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
    params: list[Any]
    if compiled.positional:
        order = [columns.index(name) for name in compiled.positiontup or ()]
        params = rows if order == list(range(len(columns))) else [tuple(r[i] for i in order) for r in rows]
    else:
        params = [dict(zip(columns, r, strict=True)) for r in rows]
    conn.exec_driver_sql(compiled.string, params)


def insert_returning(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Insert rows (dicts with the same keys) and return the ``returning`` columns of each, in order.

    PostgreSQL takes them through COPY (:func:`db.pg_copy.insert_returning`); SQLite takes SQLAlchemy's
    own insert, whose type processing (timestamps) it needs.
    """
    if conn.dialect.name == "postgresql":
        return pg_copy.insert_returning(conn, table, rows, returning)
    query = sa.insert(table).returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in conn.execute(query, rows)]
