"""PostgreSQL's fast write path: rows travel by ``COPY`` (psycopg 3), then one set-based statement.

Drop-in PostgreSQL versions of the store's insert helpers (issue 12, item 3), with the same signatures, for
``db.inserts`` to call when ``conn.dialect.name == "postgresql"``:

- :func:`insert_tuples` and :func:`insert_values_chunks`: plain rows, ``COPY`` straight into the table;
- :func:`insert_returning`: rows whose table has a serial key take their ids from the sequence in one
  query and are copied straight in too; otherwise they are copied into a staging table and moved with one
  ``INSERT ... SELECT ... RETURNING``;

and two more of the same kind for the statements the store still sends row by row or as multi-row VALUES:

- :func:`upsert_rows`: staging table, then one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE / NOTHING``;
- :func:`update_rows`: staging table, then one ``UPDATE ... FROM``.

Why: a COPY row is parsed by the server's COPY code, far cheaper than a statement's parameters, and the
client formats it in psycopg's C code; an array-per-column ``unnest`` or a multi-row VALUES statement costs
the client an adaptation of every value and the server a parse of every parameter.

Values are adapted by psycopg's dumpers for the table's own column types and COPY's text format (never
escaped by hand): text with tabs, newlines, backslashes or any Unicode goes as it is, bytes as bytea,
booleans as bool, None as NULL. Text format, not binary: psycopg's binary int4 dumper wraps an integer
past 32 bits silently (2**31 is stored as -2**31), where the text form lets the server refuse it as it
refuses it from an INSERT; on 200,000 author rows the two cost about the same (0.1 to 0.2 s of client
CPU, 0.2 s of server CPU; the unnest INSERT of the same rows 2.3 s and 1.0 s). A datetime must be
timezone-aware and is stored as UTC, as :class:`db.models.UtcDateTime` does; a naive one raises
ValueError before anything is sent. A value the server refuses (a NUL in text, an
integer out of range, a duplicate key) raises SQLAlchemy's exception of the same kind as the plain path's
(``sa.exc.DataError``, ``sa.exc.IntegrityError``, ...; the driver's error as ``__cause__``'s ``orig``).

Everything runs on the SQLAlchemy connection's own DBAPI connection, in its transaction: a rollback
undoes it. Staging tables are temporary (``ON COMMIT DELETE ROWS``), one per table and column set and
session, emptied before each use; they hold nothing between transactions. The engine's
``before_cursor_execute`` / ``after_cursor_execute`` listeners see each statement (``COPY "authors"
(...) FROM STDIN`` rather than ``INSERT INTO authors``), so whatever observes or fails statements by
their text must name COPY too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

# SQLAlchemy's PostgreSQL type names (as db.models compiles) -> the names psycopg's dumpers know.
_COPY_TYPES: dict[str, str] = {
    "TEXT": "text",
    "VARCHAR": "text",
    "INTEGER": "int4",
    "BIGINT": "int8",
    "SMALLINT": "int2",
    "BOOLEAN": "bool",
    "FLOAT": "float8",
    "DOUBLE PRECISION": "float8",
    "REAL": "float4",
    "BYTEA": "bytea",
    "DATE": "date",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


def insert_tuples(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Sequence[Any]],
    columns: Sequence[str] | None = None,
) -> None:
    """Insert plain rows with one COPY.

    Args:
        conn: a connection to PostgreSQL, in a transaction.
        table: the table the rows go into.
        rows: tuples of values in the order of ``columns``.
        columns: the columns the tuples hold; by default every column of the table, in its order (as
            the store's child rows are built).

    Raises:
        sa.exc.DBAPIError: the server refused a row (its subclass says why); nothing was inserted.
        ValueError: a naive datetime.
    """
    if not rows:
        return
    names = tuple(columns) if columns is not None else tuple(table.columns.keys())
    _copy(conn, None, table, names, rows)


def insert_values_chunks(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert plain rows with one COPY (the signature of the store's unnest helper)."""
    insert_tuples(conn, table, rows, columns)


def insert_returning(
    conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Insert rows (mappings with the same keys) and return the ``returning`` columns of each.

    A table whose key is one serial integer column, asked for that key and columns the rows give: the
    ids come from the key's sequence in one query and the rows are copied straight in (the tuples come
    back in the rows' order). Otherwise: COPY into a staging table, then one ``INSERT ... SELECT ...
    RETURNING`` (in the order the server returns them). Callers map the tuples by a natural key either way.

    Raises:
        sa.exc.DBAPIError: the server refused a row; nothing was inserted.
        ValueError: a naive datetime, or rows that do not all have the same keys.
    """
    if not rows:
        return []
    columns = tuple(rows[0])
    tuples = [_row_tuple(row, columns) for row in rows]
    key = _serial_key(table)
    if key is not None and key not in columns and all(n == key or n in columns for n in returning):
        ids = _next_ids(conn, table, key, len(tuples))
        if ids is not None:
            names = (key, *columns)
            full = _checked(
                [(i, *t) for i, t in zip(ids, tuples, strict=True)], _copy_types(table, names, conn.dialect)
            )
            _copy(conn, None, table, names, full, checked=True)
            at = [names.index(name) for name in returning]
            return [tuple(row[n] for n in at) for row in full]  # as stored: timestamps in UTC
    from psycopg import sql

    stage = _staged(conn, table, columns, tuples)
    statement = sql.SQL("INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} RETURNING {returning}")
    return _fetch(
        conn,
        statement.format(
            table=_table_name(table),
            columns=_names(columns),
            stage=sql.Identifier(stage),
            returning=_names(returning),
        ),
    )


def upsert_rows(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    index_elements: Sequence[str],
    update: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert rows, or on a conflict on ``index_elements`` set the ``update`` columns from the row (none:
    DO NOTHING), with one COPY into a staging table and one ``INSERT ... SELECT ... ON CONFLICT``.

    Two rows with the same ``index_elements`` in one call are the caller's to avoid (PostgreSQL refuses
    to update a row twice in one statement, as it does for a multi-row VALUES upsert). Returns the
    ``returning`` columns of the rows inserted or updated (an empty list when none is asked for).

    Raises:
        sa.exc.DBAPIError: the server refused a row; nothing was written.
        ValueError: a naive datetime, or rows that do not all have the same keys.
    """
    if not rows:
        return []
    from psycopg import sql

    columns = tuple(rows[0])
    stage = _staged(conn, table, columns, [_row_tuple(row, columns) for row in rows])
    action: sql.Composable
    if update:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in update
            )
        )
    else:
        action = sql.SQL("DO NOTHING")
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} ON CONFLICT ({keys}) {action}"
    ).format(
        table=_table_name(table),
        columns=_names(columns),
        stage=sql.Identifier(stage),
        keys=_names(index_elements),
        action=action,
    )
    if returning:
        return _fetch(conn, statement + sql.SQL(" RETURNING {}").format(_names(returning)))
    _execute(conn, statement)
    return []


def update_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], key: str) -> int:
    """Set every other column the rows give on the row whose ``key`` matches, with one COPY into a staging
    table and one ``UPDATE ... FROM``; returns how many rows were updated. Keys must be unique in a call.

    Raises:
        sa.exc.DBAPIError: the server refused a value; nothing was written.
        ValueError: a naive datetime, or rows that do not all have the same keys.
    """
    if not rows:
        return 0
    from psycopg import sql

    columns = tuple(rows[0])
    stage = _staged(conn, table, columns, [_row_tuple(row, columns) for row in rows])
    statement = sql.SQL("UPDATE {table} AS t SET {sets} FROM {stage} AS s WHERE t.{key} = s.{key}").format(
        table=_table_name(table),
        sets=sql.SQL(", ").join(
            sql.SQL("{} = s.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in columns if n != key
        ),
        stage=sql.Identifier(stage),
        key=sql.Identifier(key),
    )
    return _execute(conn, statement)


# ---------------------------------------------------------------------------------------------- inside


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one (in the transaction SQLAlchemy began)."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        raise ValueError(f"db.pg_copy needs PostgreSQL through psycopg 3, not {conn.dialect.name}")
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return raw  # type: ignore[return-value]


def _row_tuple(row: Mapping[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    try:
        if len(row) == len(columns):
            return tuple(row[name] for name in columns)
    except KeyError:
        pass
    raise ValueError(f"rows with different keys: {sorted(row)} and {sorted(columns)}")


def _copy_types(table: sa.Table, columns: Sequence[str], dialect: sa.Dialect) -> list[str]:
    names = []
    for name in columns:
        compiled = table.c[name].type.compile(dialect=dialect).upper()
        if compiled not in _COPY_TYPES:
            raise ValueError(f"db.pg_copy cannot copy {table.name}.{name} of type {compiled}")
        names.append(_COPY_TYPES[compiled])
    return names


def _checked(rows: Sequence[Sequence[Any]], types: list[str]) -> Sequence[Sequence[Any]]:
    """The rows, with timestamps made UTC and naive ones refused (UtcDateTime's bind processing)."""
    stamps = [n for n, name in enumerate(types) if name == "timestamptz"]
    if not stamps:
        return rows
    out: list[Sequence[Any]] = []
    for row in rows:
        values = list(row)
        for n in stamps:
            value = values[n]
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    raise ValueError("naive datetime given where a timezone-aware one is required")
                values[n] = value.astimezone(UTC)
        out.append(values)
    return out


def _copy(
    conn: Connection,
    stage: str | None,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    checked: bool = False,
) -> None:
    """One COPY of ``rows`` into ``table``, or into its staging table ``stage`` (``checked``: the rows
    have been through :func:`_checked` already)."""
    from psycopg import sql

    types = _copy_types(table, columns, conn.dialect)
    if not checked:
        rows = _checked(rows, types)
    statement = sql.SQL("COPY {target} ({columns}) FROM STDIN").format(
        target=_table_name(table) if stage is None else sql.Identifier(stage),
        columns=_names(columns),
    )
    with _cursor(conn, statement, None) as cursor, cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _staged(
    conn: Connection, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> str:
    """Copy the rows into this session's staging table for ``table`` and ``columns``; returns its name.

    The table is created on first use in a session (``CREATE TEMP TABLE IF NOT EXISTS``, so a creation
    rolled back with its transaction is made again) with the target's column types and no constraints,
    and emptied before each use.
    """
    from psycopg import sql

    digest = hashlib.sha1(",".join(columns).encode(), usedforsecurity=False).hexdigest()[:10]
    stage = f"stage_{table.name}_{digest}"
    create = sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
        " SELECT {columns} FROM {table} WITH NO DATA; DELETE FROM {stage}"
    ).format(stage=sql.Identifier(stage), columns=_names(columns), table=_table_name(table))
    _execute(conn, create)
    _copy(conn, stage, table, columns, rows)
    return stage


def _serial_key(table: sa.Table) -> str | None:
    """The table's key column when it is one autoincrementing integer (a serial), else None."""
    key = list(table.primary_key.columns)
    if len(key) != 1:
        return None
    column = key[0]
    if column is not table.autoincrement_column:
        return None
    return column.name


def _next_ids(conn: Connection, table: sa.Table, key: str, count: int) -> list[int] | None:
    """``count`` new values of the sequence behind ``table.key``, in one query; None when the column
    has no sequence (the caller takes the staging path)."""
    from psycopg import sql

    statement = sql.SQL(
        "SELECT nextval(q.seq) FROM (SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq) AS q,"
        " generate_series(1, %s)"
    )
    params = (_qualified(table), key, count)
    with _cursor(conn, statement, params) as cursor:
        cursor.execute(statement, params)
        values = [value for (value,) in cursor.fetchall()]
    if any(value is None for value in values):
        return None
    return [int(value) for value in values]


def _execute(conn: Connection, statement: sql.Composed | sql.SQL) -> int:
    with _cursor(conn, statement, None) as cursor:
        cursor.execute(statement)
        return cursor.rowcount


def _fetch(conn: Connection, statement: sql.Composed | sql.SQL) -> list[tuple[Any, ...]]:
    with _cursor(conn, statement, None) as cursor:
        cursor.execute(statement)
        return [tuple(row) for row in cursor.fetchall()]


@contextmanager
def _cursor(
    conn: Connection, statement: sql.Composed | sql.SQL, params: tuple[Any, ...] | None
) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor of the connection's own DBAPI connection, for one statement.

    The engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners see the statement as
    text (COPY included), as they see any other, and an error a listener raises is wrapped like the
    driver's own (what tests/db_helpers.failing_statement relies on); a listener that rewrites the
    statement is not obeyed. The driver's errors come out as SQLAlchemy's.
    """
    import psycopg

    raw = _driver(conn)
    observed = bool(conn.dispatch.before_cursor_execute) or bool(conn.dispatch.after_cursor_execute)
    try:
        with raw.cursor() as cursor:
            text = statement.as_string(raw) if observed else ""
            for before in conn.dispatch.before_cursor_execute:
                before(conn, cursor, text, params, None, False)
            yield cursor
            for after in conn.dispatch.after_cursor_execute:
                after(conn, cursor, text, params, None, False)
    except psycopg.Error as exc:
        raise _wrapped(exc, statement, raw) from exc


def _table_name(table: sa.Table) -> sql.Composable:
    from psycopg import sql

    if table.schema:
        return sql.Identifier(table.schema, table.name)
    return sql.Identifier(table.name)


def _qualified(table: sa.Table) -> str:
    """The table's name as pg_get_serial_sequence reads it (quoted, so any name is taken as it is)."""
    name = '"' + table.name.replace('"', '""') + '"'
    return f'"{table.schema}".{name}' if table.schema else name


def _names(columns: Iterable[str]) -> sql.Composable:
    from psycopg import sql

    return sql.SQL(", ").join(sql.Identifier(name) for name in columns)


def _wrapped(
    exc: Exception, statement: sql.Composable, raw: psycopg.Connection[Any]
) -> sa.exc.StatementError:
    """The driver's error as SQLAlchemy's, of the same kind (IntegrityError, DataError, ...)."""
    import psycopg

    try:
        text = statement.as_string(raw)
    except psycopg.Error:
        text = repr(statement)
    return sa.exc.DBAPIError.instance(text, None, exc, psycopg.Error)
