"""Reporting: the report_* views (migrations 0003, 0006) and streamed exports of a view or of a query.

A view is read with its columns' types, so both dialects give the same values (SQLite keeps booleans as
0/1 and timestamps as text; the types turn them back). A user's query is run as written: its values are
whatever the database returns. Either way the rows are pulled from the database in batches of
``batch_size`` (a server-side cursor on PostgreSQL) inside one read-only transaction, and written out as
they come, so memory does not grow with the size of the result.

Values are made JSON-able on the way out: timestamps ISO 8601 in UTC, decimals as numbers, binary as
lower-case hex. See docs/reporting.md for what each view answers.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, storage_error
from db.models import UtcDateTime
from harvester.core.errors import HarvestError, UsageError

BATCH_SIZE = 1000  # rows fetched from the database at a time

_TEXT = sa.Text()
_INT = sa.Integer()
_BOOL = sa.Boolean()
_TIME = UtcDateTime()
_FLOAT = sa.Float()
_DATE = sa.Date()


@dataclass(frozen=True, slots=True)
class ReportView:
    """A report_* view: its name, what it answers, its columns and types, and the order it exports in."""

    name: str
    description: str
    columns: tuple[tuple[str, sa.types.TypeEngine[Any]], ...]
    order_by: tuple[str, ...]  # a name starting with "-" sorts descending; NULLs always last

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


_ARTICLE_COLUMNS = (
    ("article_id", _INT),
    ("pmid", _TEXT),
    ("doi", _TEXT),
    ("pmcid", _TEXT),
    ("title", _TEXT),
    ("pub_year", _INT),
    ("journal_title", _TEXT),
)

VIEWS: tuple[ReportView, ...] = (
    ReportView(
        "report_articles_by_year_journal",
        "Articles per publication year and journal.",
        (
            ("pub_year", _INT),
            ("journal_key", _TEXT),
            ("journal_title", _TEXT),
            ("journal_iso_abbrev", _TEXT),
            ("issn", _TEXT),
            ("articles", _INT),
        ),
        ("pub_year", "journal_key"),
    ),
    ReportView(
        "report_author_articles",
        "One row per author of each article: name, ORCID, affiliations, and the article.",
        (
            ("orcid", _TEXT),
            ("last_name", _TEXT),
            ("fore_name", _TEXT),
            ("initials", _TEXT),
            ("suffix", _TEXT),
            ("collective_name", _TEXT),
            ("author_position", _INT),
            ("affiliations", _TEXT),
            *_ARTICLE_COLUMNS,
        ),
        ("article_id", "author_position"),
    ),
    ReportView(
        "report_mesh_term_counts",
        "Articles per MeSH descriptor, and how many have it as a major topic.",
        (
            ("descriptor_ui", _TEXT),
            ("descriptor", _TEXT),
            ("articles", _INT),
            ("major_topic_articles", _INT),
        ),
        ("-articles", "descriptor_ui", "descriptor"),
    ),
    ReportView(
        "report_retractions",
        "Each statement that an article is retracted, with the source that made it and the notice.",
        (*_ARTICLE_COLUMNS, ("source", _TEXT), ("position", _INT), ("statement", _TEXT), ("notice", _TEXT)),
        ("article_id", "source", "position"),
    ),
    ReportView(
        "report_license_counts",
        "Articles per licence, with whether the licence counts as open access.",
        (("license_url", _TEXT), ("license_type", _TEXT), ("open_access", _BOOL), ("articles", _INT)),
        ("-articles", "license_url", "license_type"),
    ),
    ReportView(
        "report_citation_counts",
        "Crossref citation and reference counts of each article.",
        (
            *_ARTICLE_COLUMNS,
            ("citation_count", _INT),
            ("references_count", _INT),
            ("crossref_status", _TEXT),
        ),
        ("article_id",),
    ),
    ReportView(
        "report_last_run_changes",
        "Every field changed by the latest finished run that changed anything.",
        (
            ("run_id", _INT),
            ("command", _TEXT),
            ("run_status", _TEXT),
            ("run_finished_at", _TIME),
            ("change_id", _INT),
            ("article_id", _INT),
            ("pmid", _TEXT),
            ("doi", _TEXT),
            ("field", _TEXT),
            ("old_value", _TEXT),
            ("new_value", _TEXT),
            ("source", _TEXT),
            ("changed_at", _TIME),
        ),
        ("change_id",),
    ),
    ReportView(
        "report_open_conflicts",
        "Open conflicts (a record naming two stored articles), one row per article named.",
        (
            ("conflict_id", _INT),
            ("source", _TEXT),
            ("source_id", _TEXT),
            ("detected_at", _TIME),
            ("run_id", _INT),
            ("claims", _TEXT),
            ("article_id", _INT),
            ("pmid", _TEXT),
            ("doi", _TEXT),
            ("pmcid", _TEXT),
            ("title", _TEXT),
        ),
        ("conflict_id", "article_id"),
    ),
    ReportView(
        "report_shared_identifiers",
        "DOIs and PMCIDs held by more than one article (PubMed records may share one), one row per article.",
        (
            ("id_type", _TEXT),
            ("value", _TEXT),
            ("articles", _INT),
            ("article_id", _INT),
            ("pmid", _TEXT),
            ("doi", _TEXT),
            ("pmcid", _TEXT),
            ("title", _TEXT),
            ("in_pubmed", _BOOL),
        ),
        ("id_type", "value", "article_id"),
    ),
    # Migration 0009: citation impact (iCite).
    ReportView(
        "report_article_metrics",
        "Every stored metrics row (iCite) of each article, with its journal and year: the metrics over time.",
        (
            *_ARTICLE_COLUMNS,
            ("source", _TEXT),
            ("valid_on", _DATE),
            ("citation_count", _INT),
            ("relative_citation_ratio", _FLOAT),
            ("nih_percentile", _FLOAT),
            ("field_citation_rate", _FLOAT),
            ("expected_citations_per_year", _FLOAT),
            ("citations_per_year", _FLOAT),
            ("apt", _FLOAT),
            ("is_research_article", _BOOL),
            ("is_clinical", _BOOL),
            ("provisional", _BOOL),
            ("fetched_at", _TIME),
        ),
        ("article_id", "source", "valid_on"),
    ),
    ReportView(
        "report_latest_metrics",
        "The latest metrics of each article beside the row before them, and the RCR's trend.",
        (
            *_ARTICLE_COLUMNS,
            ("source", _TEXT),
            ("valid_on", _DATE),
            ("citation_count", _INT),
            ("relative_citation_ratio", _FLOAT),
            ("nih_percentile", _FLOAT),
            ("previous_valid_on", _DATE),
            ("previous_citation_count", _INT),
            ("previous_relative_citation_ratio", _FLOAT),
            ("citation_count_change", _INT),
            ("relative_citation_ratio_change", _FLOAT),
            ("trend", _TEXT),
        ),
        ("article_id", "source"),
    ),
    ReportView(
        "report_citations",
        "Citation edges with a stored article on either end, with both titles where stored.",
        (
            ("citing_pmid", _TEXT),
            ("citing_article_id", _INT),
            ("citing_title", _TEXT),
            ("cited_pmid", _TEXT),
            ("cited_article_id", _INT),
            ("cited_title", _TEXT),
            ("source", _TEXT),
        ),
        ("citing_pmid", "cited_pmid", "source"),
    ),
    ReportView(
        "report_author_impact",
        "Per author (ORCID, else name; an approximation): articles, citations, mean and median RCR, h-index.",
        (
            ("author_key", _TEXT),
            ("orcid", _TEXT),
            ("last_name", _TEXT),
            ("fore_name", _TEXT),
            ("collective_name", _TEXT),
            ("articles", _INT),
            ("articles_with_metrics", _INT),
            ("total_citations", _INT),
            ("mean_rcr", _FLOAT),
            ("median_rcr", _FLOAT),
            ("h_index", _INT),
        ),
        ("-h_index", "-total_citations", "author_key"),
    ),
)

_BY_NAME = {view.name: view for view in VIEWS}


def view_names() -> tuple[str, ...]:
    """The names of the reporting views, in the order the docs list them."""
    return tuple(_BY_NAME)


def get_view(name: str) -> ReportView:
    """The view called ``name``.

    Raises:
        UsageError: there is no such view.
    """
    view = _BY_NAME.get(name.strip().lower())
    if view is None:
        raise UsageError(f"unknown view {name!r}: use one of {', '.join(view_names())}")
    return view


@dataclass(frozen=True, slots=True)
class ReportRows:
    """The column names of a result and its rows, each value already JSON-able; iterate once."""

    columns: tuple[str, ...]
    rows: Iterator[tuple[Any, ...]]


@contextmanager
def open_report(
    engine: Engine, *, view: str | None = None, query: str | None = None, batch_size: int = BATCH_SIZE
) -> Iterator[ReportRows]:
    """Run a view or a query in a read-only transaction and hand over its rows as they are fetched.

    The transaction stays open while the block runs; leave the block to end it. Exactly one of ``view``
    and ``query`` is given.

    Raises:
        UsageError: an unknown view; a query that is not a single read-only SELECT, that the database
            rejects (one line: the database's own message) or that tries to write.
        StorageError: the database could not be read.
    """
    if (view is None) == (query is None):
        raise ValueError("give exactly one of view and query")
    try:
        with begin_read(engine) as conn, _read_only(conn):
            if view is not None:
                result = _execute_view(conn, get_view(view), batch_size)
            else:
                result = _execute_query(conn, _checked_query(query or ""), batch_size)
            columns = tuple(result.keys())
            yield ReportRows(columns, (tuple(_jsonable(v) for v in row) for row in result))
    except DBAPIError as exc:
        raise _error(exc, engine, user_query=query is not None) from exc


def export_report(
    engine: Engine,
    out: TextIO,
    fmt: Literal["jsonl", "csv"],
    *,
    view: str | None = None,
    query: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Write the rows of a view or of a query to ``out`` as JSON Lines or CSV, as they are fetched.

    JSON Lines: one object per row, keys in column order. CSV: a header row, then one row per result row
    (NULL empty, booleans "true"/"false", JSON values as JSON text).

    Returns:
        How many rows were written.

    Raises:
        UsageError, StorageError: as :func:`open_report`.
        ValueError: an unknown format.
    """
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}: use jsonl or csv")
    count = 0
    with open_report(engine, view=view, query=query, batch_size=batch_size) as report:
        if fmt == "jsonl":
            for row in report.rows:
                out.write(json.dumps(dict(zip(report.columns, row, strict=True)), ensure_ascii=False))
                out.write("\n")
                count += 1
        else:
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(report.columns)
            for row in report.rows:
                writer.writerow([_csv_value(v) for v in row])
                count += 1
    return count


# ---------------------------------------------------------------------------------------------- running


@contextmanager
def _read_only(conn: Connection) -> Iterator[None]:
    """Make the open transaction read-only, so a query cannot change the database whatever it says."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        yield
        return
    conn.exec_driver_sql("PRAGMA query_only = ON")
    try:
        yield
    finally:
        # The connection goes back to the pool: it must write again for the next user.
        try:
            conn.exec_driver_sql("PRAGMA query_only = OFF")
        except DBAPIError:
            conn.invalidate()


def _execute_view(conn: Connection, view: ReportView, batch_size: int) -> sa.CursorResult[Any]:
    table = sa.table(view.name, *(sa.column(name, type_) for name, type_ in view.columns))
    order = [
        (table.c[key[1:]].desc() if key.startswith("-") else table.c[key].asc()).nulls_last()
        for key in view.order_by
    ]
    query = sa.select(*table.c).order_by(*order)
    return conn.execution_options(stream_results=True, yield_per=batch_size).execute(query)


def _execute_query(conn: Connection, sql: str, batch_size: int) -> sa.CursorResult[Any]:
    if conn.dialect.name == "postgresql":
        sql = sql.replace("%", "%%")  # psycopg reads % as a placeholder; %% is a literal % everywhere
    return conn.execution_options(stream_results=True, yield_per=batch_size).exec_driver_sql(sql)


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_READING_STATEMENTS = frozenset({"select", "with", "values"})


def _checked_query(sql: str) -> str:
    """The query without trailing semicolons, if it starts as a reading statement does.

    Only a first check, for a clear message: the read-only transaction is what stops a write.
    """
    body = re.sub(r"[\s;]+$", "", sql)
    start = _LEADING_NOISE.match(body)
    rest = body[start.end() if start else 0 :]
    if not rest:
        raise UsageError("the query is empty")
    word = _FIRST_WORD.match(rest)
    first = word.group(0) if word else rest[:20]
    if first.lower() not in _READING_STATEMENTS:
        raise UsageError(
            f"the query must be one SELECT statement (or WITH ... SELECT, VALUES); it starts with {first!r}"
        )
    return body


# PostgreSQL SQLSTATE classes that mean the database, not the query, failed: connection, resources,
# operator intervention, system and internal errors. psycopg gives no SQLSTATE for a lost connection.
_STORAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58", "XX"})
# SQLite has no SQLSTATE: these messages mean the database file, not the query, failed.
_SQLITE_STORAGE_MESSAGES = (
    "database is locked",
    "disk i/o error",
    "database or disk is full",
    "file is not a database",
    "unable to open database file",
    "database disk image is malformed",
)


def _error(exc: DBAPIError, engine: Engine, *, user_query: bool) -> HarvestError:
    """A one-line error: a UsageError for what the query did wrong, a StorageError for the database."""
    orig = exc.orig
    lines = [line.strip() for line in str(orig if orig is not None else exc).splitlines() if line.strip()]
    message = lines[0] if lines else type(orig).__name__
    lowered = message.lower()
    if engine.dialect.name == "postgresql":
        sqlstate = getattr(orig, "sqlstate", None)
        storage = sqlstate is None or sqlstate[:2] in _STORAGE_SQLSTATE_CLASSES
        wrote = sqlstate == "25006"  # read_only_sql_transaction
    else:
        storage = any(needle in lowered for needle in _SQLITE_STORAGE_MESSAGES)
        wrote = "readonly database" in lowered
    if not user_query or storage or exc.connection_invalidated:
        return storage_error(exc, "cannot read", engine)
    if wrote:
        return UsageError(f"the query tried to write (queries run read-only): {message}")
    return UsageError(f"the query failed: {message}")


# ---------------------------------------------------------------------------------------------- values


def _jsonable(value: Any) -> Any:
    """A value json.dumps writes as the value it is: timestamps ISO 8601 UTC, bytes hex, decimals numbers."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return str(value)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
