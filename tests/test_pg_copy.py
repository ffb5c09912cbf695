"""db.pg_copy, PostgreSQL's COPY write path: awkward values come back as they went in, and the rows it
writes equal those of SQLAlchemy's plain INSERT of the same rows (issue 12, item 3).

PostgreSQL only: skipped without HARVEST_TEST_POSTGRES_URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from db import pg_copy
from db.engine import open_database
from db.models import metadata
from tests.db_helpers import failing_statement, fresh_database_url, recorded_statements

pytestmark = pytest.mark.postgres

T = metadata.tables
NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)

# Text that a hand-made COPY escaping gets wrong: COPY's own delimiters and escapes, NULL's text form,
# the end-of-data marker, quotes, and Unicode beyond the BMP, combining and right-to-left.
AWKWARD_TEXT = (
    "tab\there",
    "new\nline and\r\ncarriage",
    "back\\slash \\N \\t \\\\",
    "\\.",
    "\\N",
    "",
    " ",
    "'single' \"double\" `back`",
    "comma, semicolon; pipe|",
    "Ünïcödé — ½ ∑ 😀 𝔘 e\u0301 \u202eRTL\u202c עברית",
    "NULL",
    "x" * 100_000,
)
AWKWARD_BYTES = (bytes(range(256)), b"", b"\\N", b"\t\n\\.", b"\x00" * 10, b"\x1f\x8b\x08\x00")


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Engine]:
    """A migrated database in a fresh schema of the PostgreSQL test server."""
    with fresh_database_url("postgresql", tmp_path) as url:
        engine = open_database(url)
        try:
            yield engine
        finally:
            engine.dispose()


def _article(conn: sa.Connection, pmid: str) -> int:
    query = sa.insert(T["articles"]).returning(T["articles"].c.id)
    row = {"pmid": pmid, "created_at": NOW, "updated_at": NOW}
    return int(conn.execute(query, row).scalar_one())


def _rows(
    conn: sa.Connection, table: str, where: Any = None, order: str = "position"
) -> list[tuple[Any, ...]]:
    t = T[table]
    query = sa.select(t).order_by(t.c[order])
    if where is not None:
        query = query.where(where)
    return [tuple(row) for row in conn.execute(query)]


def _authors(article_id: int) -> list[tuple[Any, ...]]:
    rows = []
    for n, text in enumerate(AWKWARD_TEXT, 1):
        rows.append(
            (article_id, n, text, text[::-1], None, "" if n % 2 else None, text, None, n % 2 == 0, n % 3 == 0)
        )
    return rows


def test_child_rows_round_trip_and_equal_plain_insert(pg: Engine) -> None:
    authors = T["authors"]
    with pg.begin() as conn:
        plain_id, copied_id = _article(conn, "1"), _article(conn, "2")
        columns = list(authors.columns.keys())
        conn.execute(sa.insert(authors), [dict(zip(columns, row, strict=True)) for row in _authors(plain_id)])
        pg_copy.insert_tuples(conn, authors, _authors(copied_id))
    with pg.connect() as conn:
        plain = _rows(conn, "authors", authors.c.article_id == plain_id)
        copied = _rows(conn, "authors", authors.c.article_id == copied_id)
    assert copied == _authors(copied_id)  # each value as it went in: text, NULL, empty string, booleans
    assert [row[1:] for row in copied] == [row[1:] for row in plain]


def test_explicit_columns_in_any_order(pg: Engine) -> None:
    sections = T["abstract_sections"]
    columns = ("text", "position", "article_id", "kind", "abstract_index")
    with pg.begin() as conn:
        article_id = _article(conn, "3")
        rows = [(text, n, article_id, "main", 0) for n, text in enumerate(AWKWARD_TEXT, 1)]
        pg_copy.insert_values_chunks(conn, sections, columns, rows)
    with pg.connect() as conn:
        stored = _rows(conn, "abstract_sections")
    assert [(r[7], r[2], r[0], r[3], r[1]) for r in stored] == rows
    assert all(r[4] is None and r[5] is None and r[6] is None for r in stored)  # columns not given: NULL


def _payloads(offset: timedelta) -> list[dict[str, Any]]:
    """raw_payloads rows with awkward bytes, and timestamps in another zone than UTC."""
    zone = timezone(offset)
    return [
        {
            "source": "pubmed",
            "source_id": f"{n}\t{offset}",
            "sha256": f"{n:064x}{offset}",
            "url": None if n % 2 else f"file:pubmed26n{n:04d}.xml.gz?q=\\N&x=\t",
            "fetched_at": NOW.astimezone(zone) + timedelta(microseconds=n),
            "content_encoding": "gzip",
            "content": content,
            "size": len(content) + 2**31,  # past int4: the column is INTEGER, so this must be refused
        }
        for n, content in enumerate(AWKWARD_BYTES)
    ]


def test_insert_returning_serial_key_round_trip(pg: Engine) -> None:
    payloads = T["raw_payloads"]
    rows = [{**row, "size": len(row["content"])} for row in _payloads(timedelta(hours=-5))]
    plain_rows = [{**row, "sha256": "p" + row["sha256"]} for row in rows]
    with pg.begin() as conn:
        returned = pg_copy.insert_returning(conn, payloads, rows, ("sha256", "id", "fetched_at"))
        plain = conn.execute(sa.insert(payloads).returning(payloads.c.sha256, payloads.c.id), plain_rows)
        plain_ids = dict(tuple(r) for r in plain)
    with pg.connect() as conn:
        stored = {row.sha256: row for row in conn.execute(sa.select(payloads))}
    assert len(returned) == len(rows)
    assert [sha for sha, _id, _at in returned] == [row["sha256"] for row in rows]  # the rows' order
    for (sha, payload_id, fetched_at), row in zip(returned, rows, strict=True):
        kept = stored[sha]
        assert kept.id == payload_id
        assert kept.content == row["content"]
        assert kept.fetched_at == row["fetched_at"] and kept.fetched_at.utcoffset() == timedelta(0)
        assert fetched_at.utcoffset() == timedelta(0)  # returned as stored: UTC
        assert kept.url == row["url"] and kept.source_id == row["source_id"] and kept.size == row["size"]
        twin = stored["p" + sha]
        assert twin.id == plain_ids["p" + sha]
        assert {**twin._asdict(), "id": 0, "sha256": ""} == {**kept._asdict(), "id": 0, "sha256": ""}
    assert len(set(stored[sha].id for sha in stored)) == 2 * len(rows)  # ids from one sequence, all distinct


def test_insert_returning_without_the_key_takes_server_defaults(pg: Engine) -> None:
    """Asked for a column the rows do not give (a server default), it goes through a staging table."""
    conflicts = T["conflicts"]
    rows = [
        {
            "source": "pubmed",
            "source_id": str(n),
            "claims": '[{"id_type": "doi", "value": "10.1/\\tx\\n"}]' + text[:50],
            "article_ids": f"{n},{n + 1}",
            "detected_at": NOW,
            "run_id": None,
        }
        for n, text in enumerate(AWKWARD_TEXT)
    ]
    with pg.begin() as conn:
        returned = pg_copy.insert_returning(conn, conflicts, rows, ("source_id", "id", "status"))
        again = pg_copy.insert_returning(conn, conflicts, [{**r, "source": "other"} for r in rows], ("id",))
    assert sorted(str(r[0]) for r in returned) == sorted(str(r["source_id"]) for r in rows)
    assert {r[2] for r in returned} == {"open"}
    with pg.connect() as conn:
        stored = {(r.source, r.source_id): r for r in conn.execute(sa.select(conflicts))}
    assert len(stored) == 2 * len(rows) and len(again) == len(rows)  # the staging table was emptied between
    for source_id, conflict_id, _status in returned:
        row = next(r for r in rows if r["source_id"] == source_id)
        kept = stored[("pubmed", source_id)]
        assert kept.id == conflict_id and kept.claims == row["claims"] and kept.detected_at == NOW


def test_other_types_round_trip(pg: Engine) -> None:
    """BIGINT, FLOAT, DATE, nullable booleans: article_metrics and bulk_files."""
    metrics, files = T["article_metrics"], T["bulk_files"]
    with pg.begin() as conn:
        article_id = _article(conn, "4")
        metric_rows = [
            {
                "article_id": article_id,
                "source": "icite",
                "valid_on": date(2026, 1, n),
                "fetched_at": NOW,
                "relative_citation_ratio": value,
                "is_clinical": flag,
                "citation_count": n,
            }
            for n, (value, flag) in enumerate(
                [(0.1, True), (None, None), (-1e308, False), (float("inf"), True), (1 / 3, None)], 1
            )
        ]
        pg_copy.insert_returning(conn, metrics, metric_rows, ("id",))
        file_row = {
            "name": "pubmed26n0001.xml.gz",
            "kind": "baseline",
            "release_year": 2026,
            "sequence": 1,
            "sha256": "f" * 64,
            "size": 2**40,
            "records": 30_000,
            "deleted": 0,
            "applied_at": NOW,
            "run_id": None,
            "forced": True,
        }
        pg_copy.insert_returning(conn, files, [file_row], ("id",))
    with pg.connect() as conn:
        stored = [r._asdict() for r in conn.execute(sa.select(metrics).order_by(metrics.c.valid_on))]
        [kept_file] = [r._asdict() for r in conn.execute(sa.select(files))]
    for row, kept in zip(metric_rows, stored, strict=True):
        assert {k: kept[k] for k in row} == row
    assert {k: kept_file[k] for k in file_row} == file_row


def test_naive_datetime_refused_before_anything_is_sent(pg: Engine) -> None:
    rows = [{**row, "size": 1, "fetched_at": datetime(2026, 1, 1)} for row in _payloads(timedelta(0))[:1]]
    with pg.begin() as conn, pytest.raises(ValueError, match="naive"):
        pg_copy.insert_returning(conn, T["raw_payloads"], rows, ("id",))
    with pg.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T["raw_payloads"])).scalar_one() == 0


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("nul in text", sa.exc.DataError),
        ("integer out of range", sa.exc.DataError),
        ("duplicate key", sa.exc.IntegrityError),
        ("null in a required column", sa.exc.IntegrityError),
    ],
)
def test_refused_rows_raise_sqlalchemys_error_and_write_nothing(
    pg: Engine, case: str, error: type[Exception]
) -> None:
    """The kind of error the store's record isolation tells apart (db.store._is_record_problem)."""
    payloads = T["raw_payloads"]
    good = {**_payloads(timedelta(0))[0], "size": 1}
    bad = {
        "nul in text": {**good, "sha256": "b", "url": "a\x00b"},
        "integer out of range": {**good, "sha256": "b", "size": 2**31},
        "duplicate key": good,
        "null in a required column": {**good, "sha256": "b", "content": None},
    }[case]
    with pytest.raises(error) as raised, pg.begin() as conn:
        pg_copy.insert_returning(conn, payloads, [good, bad], ("id",))
    assert isinstance(raised.value, sa.exc.DBAPIError)
    with pg.connect() as conn:  # the transaction was rolled back whole
        assert conn.execute(sa.select(sa.func.count()).select_from(payloads)).scalar_one() == 0
    # The plain path refuses the same rows with the same kind of error.
    with pytest.raises(error), pg.begin() as conn:
        conn.execute(sa.insert(payloads), [good, bad])


def test_upsert_rows_equals_on_conflict_do_update(pg: Engine) -> None:
    records = T["source_records"]
    with pg.begin() as conn:
        ids = [_article(conn, str(n)) for n in (10, 11, 12)]
        payload_ids = [
            r[0]
            for r in pg_copy.insert_returning(
                conn, T["raw_payloads"], [{**p, "size": 1} for p in _payloads(timedelta(0))[:2]], ("id",)
            )
        ]

    def rows(payload: int, at: datetime, source: str) -> list[dict[str, Any]]:
        return [
            {
                "article_id": a,
                "source": source,
                "source_id": f"s\t{a}",
                "payload_id": payload,
                "fetched_at": at,
            }
            for a in ids
        ]

    later = NOW + timedelta(days=1)
    keys = ("source", "source_id", "article_id")
    update = ("payload_id", "fetched_at")
    with pg.begin() as conn:
        pg_copy.upsert_rows(conn, records, rows(payload_ids[0], NOW, "copy")[:2], index_elements=keys)
        written = pg_copy.upsert_rows(
            conn,
            records,
            rows(payload_ids[1], later, "copy"),
            index_elements=keys,
            update=update,
            returning=("id",),
        )
        # The plain path: SQLAlchemy's INSERT ... ON CONFLICT DO UPDATE of the same rows.
        upsert = postgresql.insert(records)
        statement = upsert.on_conflict_do_update(
            index_elements=list(keys), set_={name: upsert.excluded[name] for name in update}
        )
        conn.execute(
            postgresql.insert(records).on_conflict_do_nothing(), rows(payload_ids[0], NOW, "plain")[:2]
        )
        conn.execute(statement, rows(payload_ids[1], later, "plain"))
        untouched = pg_copy.upsert_rows(conn, records, rows(payload_ids[0], NOW, "copy"), index_elements=keys)
    assert len(written) == 3 and untouched == []
    with pg.connect() as conn:
        stored = [r._asdict() for r in conn.execute(sa.select(records))]
    mine = sorted(
        (r["article_id"], r["source_id"], r["payload_id"], r["fetched_at"])
        for r in stored
        if r["source"] == "copy"
    )
    plain = sorted(
        (r["article_id"], r["source_id"], r["payload_id"], r["fetched_at"])
        for r in stored
        if r["source"] == "plain"
    )
    assert mine == plain == sorted((a, f"s\t{a}", payload_ids[1], later) for a in ids)


def test_update_rows_equals_update_by_key(pg: Engine) -> None:
    articles = T["articles"]
    with pg.begin() as conn:
        ids = [_article(conn, str(100 + n)) for n in range(len(AWKWARD_TEXT))]
    changes = [
        {
            "id": article_id,
            "title": text,
            "abstract": None,
            "retracted": n % 2 == 0,
            "updated_at": NOW + timedelta(hours=n),
        }
        for n, (article_id, text) in enumerate(zip(ids, AWKWARD_TEXT, strict=True))
    ]
    half = len(changes) // 2
    with pg.begin() as conn:
        count = pg_copy.update_rows(conn, articles, changes[:half], "id")
        conn.execute(
            sa.update(articles).where(articles.c.id == sa.bindparam("b_id")),
            [{("b_id" if k == "id" else k): v for k, v in row.items()} for row in changes[half:]],
        )
    assert count == half
    with pg.connect() as conn:
        stored = {r.id: r._asdict() for r in conn.execute(sa.select(articles))}
    for row in changes:
        assert {k: stored[row["id"]][k] for k in row} == row


def test_staging_table_survives_a_rollback_and_holds_nothing_after_commit(pg: Engine) -> None:
    conflicts = T["conflicts"]
    row = {"source": "pubmed", "source_id": "1", "claims": "[]", "article_ids": "1,2", "detected_at": NOW}
    with pg.connect() as conn:
        with conn.begin() as transaction:  # creates the staging table, then rolls back its creation
            pg_copy.upsert_rows(conn, conflicts, [row], index_elements=("source", "source_id", "article_ids"))
            transaction.rollback()
        with conn.begin():
            pg_copy.upsert_rows(conn, conflicts, [row], index_elements=("source", "source_id", "article_ids"))
        with conn.begin():
            staged = (
                conn.exec_driver_sql(
                    "SELECT relname FROM pg_class"
                    " WHERE relpersistence = 't' AND relname LIKE 'stage_conflicts_%%'"
                )
                .scalars()
                .all()
            )
            assert len(staged) == 1
            assert conn.exec_driver_sql(f'SELECT COUNT(*) FROM "{staged[0]}"').scalar_one() == 0  # noqa: S608
        assert conn.execute(sa.select(sa.func.count()).select_from(conflicts)).scalar_one() == 1


def test_the_engines_listeners_see_and_may_fail_each_statement(pg: Engine) -> None:
    """What tests.db_helpers' recorded_statements and failing_statement rely on, COPY included."""
    languages, conflicts = T["article_languages"], T["conflicts"]
    row = {"source": "pubmed", "source_id": "1", "claims": "[]", "article_ids": "1,2", "detected_at": NOW}
    with recorded_statements(pg) as statements, pg.begin() as conn:
        article_id = _article(conn, "5")
        pg_copy.insert_tuples(conn, languages, [(article_id, 1, "eng")])
        pg_copy.insert_returning(conn, conflicts, [row], ("id",))
        pg_copy.upsert_rows(conn, conflicts, [row], index_elements=("source", "source_id", "article_ids"))
    copies = [s for s in statements if s.startswith("COPY ")]
    assert copies[0] == 'COPY "article_languages" ("article_id", "position", "language") FROM STDIN'
    assert any(s.startswith("SELECT nextval(") for s in statements)  # the conflicts ids
    assert any(s.startswith('INSERT INTO "conflicts"') and "ON CONFLICT" in s for s in statements)
    with failing_statement(pg, 'COPY "article_languages"'), pytest.raises(sa.exc.OperationalError) as caught:
        with pg.begin() as conn:
            pg_copy.insert_tuples(conn, languages, [(article_id, 2, "fre")])
    assert "disk I/O error" in str(caught.value)
    with pg.connect() as conn:
        assert _rows(conn, "article_languages") == [(article_id, 1, "eng")]


def test_a_key_without_a_sequence_takes_the_staging_path(pg: Engine) -> None:
    """An integer key the model calls autoincrement but whose server default is no sequence."""
    scratch = sa.Table(
        "scratch_keys",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text),
    )
    rows = [{"name": text} for text in AWKWARD_TEXT[:5]]
    with pg.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE scratch_keys (id integer PRIMARY KEY"
            " DEFAULT (1000 + floor(random() * 1000000000))::integer, name text)"
        )
        returned = pg_copy.insert_returning(conn, scratch, rows, ("id", "name"))
        stored = {r.id: r.name for r in conn.execute(sa.select(scratch))}
    assert len(returned) == len(rows) and all(i >= 1000 for i, _ in returned)
    assert dict(returned) == stored
    assert sorted(stored.values()) == sorted(r["name"] for r in rows)


def test_rows_with_different_keys_are_refused(pg: Engine) -> None:
    rows: list[dict[str, Any]] = [
        {"source": "a", "source_id": "1", "claims": "[]", "article_ids": "1", "detected_at": NOW},
        {"source": "a", "source_id": "2", "claims": "[]", "article_ids": "1", "run_id": None},
    ]
    with pg.begin() as conn, pytest.raises(ValueError, match="different keys"):
        pg_copy.insert_returning(conn, T["conflicts"], rows, ("id",))


def test_refuses_another_dialect(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        with engine.begin() as conn, pytest.raises(ValueError, match="PostgreSQL"):
            pg_copy.insert_tuples(conn, T["article_languages"], [(1, 1, "eng")])
    finally:
        engine.dispose()
