"""The report_* views, streamed exports of views and queries (db.reporting), harvest export --view/--query.

One database with known content is built per dialect with the real store functions; each view's rows are
asserted as literal rows, the same for SQLite and PostgreSQL, so passing on both shows the dialects agree.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.models import metadata
from db.reconcile import store_crossref, store_pmc
from db.reporting import VIEWS, _checked_query, _jsonable, export_report, get_view, open_report, view_names
from db.runs import finish_run, start_run
from db.store import mark_deleted, store_articles
from harvester.cli import run
from harvester.core.errors import ExitCode, StorageError, UsageError
from harvester.core.records import (
    Article,
    Author,
    CommentCorrection,
    Journal,
    MeshHeading,
    PartialDate,
    PublicationType,
)
from tests.db_helpers import (
    crossref_work,
    database_params,
    failing_statement,
    fresh_database_url,
    make_article,
    open_migrated,
    pmc_front,
    pubmed_record,
    recorded_statements,
    snapshot,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reporting.md"
FETCHED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RUN_FINISHED = {1: datetime(2024, 5, 2, 1, 0, tzinfo=UTC), 2: datetime(2024, 5, 3, 1, 0, tzinfo=UTC)}
RUN_FINISHED[3] = datetime(2024, 5, 4, 1, 0, tzinfo=UTC)  # finished last, but changed nothing
CHANGED = datetime(2024, 5, 3, 0, 30, tzinfo=UTC)
DETECTED = datetime(2024, 5, 3, 0, 40, tzinfo=UTC)
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
CC0 = "HTTPS://CreativeCommons.org/publicdomain/zero/1.0/"
OTHER = "https://example.org/licence"
J_TEST = Journal(
    title="Journal of Testing", iso_abbrev="J Test", issn_print="1234-5678", nlm_unique_id="9999999"
)
RETRACTED = PublicationType("Retracted Publication", "D016441")
JOURNAL_ARTICLE = PublicationType("Journal Article", "D016428")
SEED_TITLE = "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
SEED_AUTHORS = [("Liu", "Kun", "K"), ("Gao", "Xin", "X"), ("Kang", "Baoqiang", "B")]
SEED_AUTHORS += [("Liu", "Yunpeng", "Y"), ("Wang", "Dingding", "D"), ("Wang", "Yi", "Y")]
ORCID = "0000-0002-1825-0097"
CLAIMS = (
    '[{"id_type": "pmcid", "value": "PMC106", "article_id": 6}, '
    '{"id_type": "pmid", "value": "105", "article_id": 5}]'
)


def article_102(**changes: Any) -> Article:
    """Another journal and year, two authors, a major descriptor, retracted by PubMed both ways."""
    return make_article(
        "102",
        pub_date=PartialDate(2021),
        journal=J_TEST,
        authors=(
            Author(
                1,
                last_name="Smith",
                fore_name="Jane A",
                initials="JA",
                orcid=ORCID,
                affiliations=("Inst Y.",),
            ),
            Author(2, last_name="Roe", fore_name="Richard", initials="R"),
        ),
        mesh=(MeshHeading("Humans", "D006801"), MeshHeading("Neoplasms", "D009369", major=True)),
        publication_types=(JOURNAL_ARTICLE, RETRACTED),
        comments_corrections=(CommentCorrection("RetractionIn", "J Test. 2023;1:1", "36000001"),),
        **changes,
    )


def article_104(**changes: Any) -> Article:
    """Deleted later: its year, retraction, authors, MeSH and changes must show nowhere."""
    return make_article("104", pub_date=PartialDate(2019), publication_types=(RETRACTED,), **changes)


def build(engine: Engine) -> None:
    """The known content every view is asserted against (article ids 1-7 are PMIDs 101-107)."""

    def pubmed(*articles: Article, run: int | None = None) -> None:
        store_articles(engine, articles, url=None, fetched_at=FETCHED, run_id=run)

    def pmc(*fronts: Any, run: int | None = None) -> None:
        store_pmc(engine, fronts, url=None, fetched_at=FETCHED, run_id=run)

    pubmed(
        make_article("101"),
        article_102(),
        make_article("103", pub_date=PartialDate(2020, 1)),
        article_104(),
        pubmed_record("105", doi="10.5555/105", pmcid="PMC105"),
        pubmed_record("106", doi="10.5555/106", pmcid="PMC106"),
        pubmed_record("107", doi="10.5555/107", pmcid="PMC107"),
    )
    pmc(pmc_front("PMC105", pmid="105", doi="10.5555/105", license_url=CC_BY))
    pmc(
        pmc_front(
            "PMC106",
            pmid="106",
            doi="10.5555/106",
            license_url="https://example.org/licence",
            license_type="publisher",
        )
    )
    pmc(pmc_front("PMC107", pmid="107", doi="10.5555/107", license_url=CC0, license_type="cc0"))
    notice = {"type": "retraction", "DOI": "10.5555/retraction-of-105", "source": "publisher"}
    store_crossref(
        engine, [crossref_work("10.5555/105", updated_by=[notice])], url=None, fetched_at=FETCHED, run_id=None
    )

    # iCite (migration 0009): two monthly answers for 101 (its RCR falls), one for 102, edges among them
    from db.icite import store_icite
    from enrich.icite_json import parse_icite_record

    def icite(pmid: str, rcr: float, modified: str, **more: Any) -> Any:
        return parse_icite_record(
            {"pmid": pmid, "relative_citation_ratio": rcr, "last_modified": modified, **more}
        )

    first = [
        icite("101", 2.0, "10/01/2026, 08:00:00", citation_count=5, cited_by=[102, 999], references=[103]),
        icite("102", 1.0, "10/01/2026, 08:00:00", citation_count=2),
    ]
    store_icite(engine, first, url=None, fetched_at=FETCHED, run_id=None)
    store_icite(
        engine,
        [icite("101", 1.5, "11/01/2026, 08:00:00", citation_count=6)],
        url=None,
        fetched_at=FETCHED,
        run_id=None,
    )

    run1 = start_run(engine, "harvest pmid (1 ids)")
    pubmed(make_article("103", pub_date=PartialDate(2020, 1), title="Changed by run 1"), run=run1)
    finish_run(engine, run1, "ok", {})
    run2 = start_run(engine, "harvest pmid (2 ids)")
    pubmed(make_article("101", pages="99"), article_104(pages="77"), run=run2)
    # A record naming articles 6 and 5 (its PMCID one's, its PMID the other's) was a conflict before issue 13;
    # two PubMed articles never are now (the PMID decides), so the row is written as such a conflict would be.
    with engine.begin() as conn:
        conn.execute(
            sa.insert(metadata.tables["conflicts"]).values(
                source="pmc",
                source_id="PMC106",
                claims=CLAIMS,
                article_ids="5,6",
                status="open",
                detected_at=DETECTED,
                run_id=run2,
            )
        )
    finish_run(engine, run2, "partial", {})
    run3 = start_run(engine, "harvest pmid (1 ids)")
    pubmed(make_article("101", pages="99"), run=run3)  # unchanged
    finish_run(engine, run3, "ok", {})
    run4 = start_run(engine, "harvest pmid (1 ids)")  # changes something, never finishes
    pubmed(article_102(pages="12-13"), run=run4)
    mark_deleted(engine, ["104"], at=FETCHED)

    tables = metadata.tables
    runs, history, conflicts = tables["harvest_runs"], tables["article_history"], tables["conflicts"]
    with engine.begin() as conn:
        assert dict(conn.execute(sa.text("SELECT pmid, id FROM articles")).all()) == {
            str(101 + i): 1 + i for i in range(7)
        }
        for run_id, finished in RUN_FINISHED.items():
            conn.execute(sa.update(runs).where(runs.c.id == run_id).values(finished_at=finished))
        conn.execute(sa.update(history).where(history.c.run_id == run2).values(changed_at=CHANGED))
        conn.execute(sa.update(conflicts).values(detected_at=DETECTED))
        extra = {"source": "pubmed", "claims": "[]", "detected_at": DETECTED, "run_id": None}
        conn.execute(
            sa.insert(conflicts),
            [
                {**extra, "source_id": "8", "article_ids": "1,2", "status": "resolved"},  # not open
                {**extra, "source_id": "9", "article_ids": "1,4", "status": "open"},  # 4 is deleted
            ],
        )


@pytest.fixture(scope="module", params=database_params())
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Engine]]:
    """The known content on one dialect, shared by the tests that only read it."""
    with fresh_database_url(str(request.param), tmp_path_factory.mktemp("reporting")) as url:
        engine = open_migrated(url)
        build(engine)
        yield url, engine
        engine.dispose()


@pytest.fixture
def engine(built: tuple[str, Engine]) -> Engine:
    return built[1]


@pytest.fixture(params=database_params())
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of its own, for tests that write."""
    with fresh_database_url(str(request.param), tmp_path) as url:
        engine = open_migrated(url)
        yield engine
        engine.dispose()


def view_rows(engine: Engine, name: str) -> list[tuple[Any, ...]]:
    with open_report(engine, view=name) as report:
        assert report.columns == get_view(name).column_names
        return sorted(report.rows, key=repr)


# ---------------------------------------------------------------------------------------------- the views


def test_articles_by_year_and_journal(engine: Engine) -> None:
    assert view_rows(engine, "report_articles_by_year_journal") == sorted(
        [
            (2020, "nlm:101568867", "Frontiers in oncology", "Front Oncol", "2234-943X", 1),
            (2021, "nlm:9999999", "Journal of Testing", "J Test", "1234-5678", 1),
            (2022, "nlm:101568867", "Frontiers in oncology", "Front Oncol", "2234-943X", 4),
        ],
        key=repr,
    )


def test_author_articles_one_row_per_author_with_orcid_and_affiliations_in_order(engine: Engine) -> None:
    def made(article_id: int, title: str, year: int) -> list[tuple[Any, ...]]:
        article = (article_id, str(100 + article_id), f"10.3389/fonc.2022.{100 + article_id}")
        tail = (f"PMC{(100 + article_id) * 3}", title, year, "Frontiers in oncology")
        affiliations = "Dept of Oncology, University X, Lyon, France.; Institute Y."
        return [
            (ORCID, "Smith", "Jane A", "JA", None, None, 1, affiliations, *article, *tail),
            (None, "Doe", "John", "J", "Jr", None, 2, None, *article, *tail),
            (None, None, None, None, None, "The ONCO Study Group", 3, None, *article, *tail),
        ]

    def seed(article_id: int) -> list[tuple[Any, ...]]:
        pmid = str(100 + article_id)
        article = (
            article_id,
            pmid,
            f"10.5555/{pmid}",
            f"PMC{pmid}",
            SEED_TITLE,
            2022,
            "Frontiers in oncology",
        )
        return [
            (None, last, fore, ini, None, None, i, None, *article)
            for i, (last, fore, ini) in enumerate(SEED_AUTHORS, 1)
        ]

    article_2 = (
        2,
        "102",
        "10.3389/fonc.2022.102",
        "PMC306",
        "Outcomes of therapy 102: a cohort study",
        2021,
        "Journal of Testing",
    )
    expected = [
        *made(1, "Outcomes of therapy 101: a cohort study", 2022),
        (ORCID, "Smith", "Jane A", "JA", None, None, 1, "Inst Y.", *article_2),
        (None, "Roe", "Richard", "R", None, None, 2, None, *article_2),
        *made(3, "Changed by run 1", 2020),
        *seed(5),
        *seed(6),
        *seed(7),
    ]
    assert view_rows(engine, "report_author_articles") == sorted(expected, key=repr)


def test_mesh_term_counts_major_by_descriptor_or_by_qualifier(engine: Engine) -> None:
    # 101 and 103: Neoplasms with the major qualifier "therapy"; 102: Neoplasms itself major; 104 deleted
    assert view_rows(engine, "report_mesh_term_counts") == sorted(
        [("D005602", "France", 2, 0), ("D006801", "Humans", 3, 0), ("D009369", "Neoplasms", 3, 3)],
        key=repr,
    )


def test_retractions_name_each_statement_and_its_source(engine: Engine) -> None:
    article_2 = (
        2,
        "102",
        "10.3389/fonc.2022.102",
        "PMC306",
        "Outcomes of therapy 102: a cohort study",
        2021,
        "Journal of Testing",
    )
    article_5 = (5, "105", "10.5555/105", "PMC105", SEED_TITLE, 2022, "Frontiers in oncology")
    assert view_rows(engine, "report_retractions") == sorted(
        [
            (*article_2, "pubmed", 1, "PublicationType: Retracted Publication", None),
            (*article_2, "pubmed", 2, "RetractionIn: J Test. 2023;1:1", "36000001"),
            (
                *article_5,
                "crossref",
                1,
                "updated-by retraction 10.5555/retraction-of-105 (publisher)",
                "10.5555/retraction-of-105",
            ),
        ],
        key=repr,
    )


def test_license_counts_and_the_open_access_rule(engine: Engine) -> None:
    assert view_rows(engine, "report_license_counts") == sorted(
        [
            (None, None, False, 3),
            (CC_BY, "open-access", True, 1),  # both rules
            ("https://example.org/licence", "publisher", False, 1),
            (CC0, "cc0", True, 1),  # a Creative Commons public-domain URL, in any case
        ],
        key=repr,
    )


def test_citation_counts(engine: Engine) -> None:
    def made(
        article_id: int, title: str, year: int, journal: str = "Frontiers in oncology"
    ) -> tuple[Any, ...]:
        pmid = str(100 + article_id)
        return (article_id, pmid, f"10.3389/fonc.2022.{pmid}", f"PMC{int(pmid) * 3}", title, year, journal)

    def seed(article_id: int) -> tuple[Any, ...]:
        pmid = str(100 + article_id)
        return (article_id, pmid, f"10.5555/{pmid}", f"PMC{pmid}", SEED_TITLE, 2022, "Frontiers in oncology")

    assert view_rows(engine, "report_citation_counts") == sorted(
        [
            (*made(1, "Outcomes of therapy 101: a cohort study", 2022), None, 3, None),
            (*made(2, "Outcomes of therapy 102: a cohort study", 2021, "Journal of Testing"), None, 3, None),
            (*made(3, "Changed by run 1", 2020), None, 3, None),
            (*seed(5), 42, 128, "found"),
            (*seed(6), None, None, None),
            (*seed(7), None, None, None),
        ],
        key=repr,
    )


def test_last_run_changes_is_the_latest_finished_run_that_changed_something(engine: Engine) -> None:
    # run 3 finished later but changed nothing; run 4 changed something but never finished; the change
    # run 2 made to article 104 is left out because 104 is deleted.
    with engine.connect() as conn:
        change_id = conn.execute(
            sa.text("SELECT id FROM article_history WHERE article_id = 1 AND field = 'pages'")
        ).scalar_one()
    assert view_rows(engine, "report_last_run_changes") == [
        (
            2,
            "harvest pmid (2 ids)",
            "partial",
            "2024-05-03T01:00:00+00:00",
            change_id,
            1,
            "101",
            "10.3389/fonc.2022.101",
            "pages",
            '"836548"',
            '"99"',
            "pubmed",
            "2024-05-03T00:30:00+00:00",
        )
    ]


def test_open_conflicts_one_row_per_live_article_named(engine: Engine) -> None:
    when = "2024-05-03T00:40:00+00:00"
    seed_105 = (5, "105", "10.5555/105", "PMC105", SEED_TITLE)
    seed_106 = (6, "106", "10.5555/106", "PMC106", SEED_TITLE)
    made_101 = (1, "101", "10.3389/fonc.2022.101", "PMC303", "Outcomes of therapy 101: a cohort study")
    assert view_rows(engine, "report_open_conflicts") == sorted(
        [
            (1, "pmc", "PMC106", when, 2, CLAIMS, *seed_105),
            (1, "pmc", "PMC106", when, 2, CLAIMS, *seed_106),
            (3, "pubmed", "9", when, None, "[]", *made_101),  # the resolved one (2) is not open
        ],
        key=repr,
    )


def test_no_view_shows_a_deleted_article(engine: Engine) -> None:
    for view in VIEWS:
        if "article_id" in view.column_names:
            with open_report(engine, view=view.name) as report:
                index = report.columns.index("article_id")
                assert 4 not in {row[index] for row in report.rows}, view.name


def test_every_view_exists_with_its_registered_columns_and_is_documented(engine: Engine) -> None:
    in_database = sorted(n for n in sa.inspect(engine).get_view_names() if n.startswith("report_"))
    assert in_database == sorted(view_names())
    docs = DOCS.read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### (report_\w+)\n(.*?)(?=^#{2,3} )", docs + "\n## end", re.S | re.M))
    for view in VIEWS:
        with engine.connect() as conn:
            result = conn.execute(sa.text(f"SELECT * FROM {view.name} WHERE 1 = 0"))  # noqa: S608 - registry names
            assert tuple(result.keys()) == view.column_names
        assert view.name in sections, f"{view.name} has no section in docs/reporting.md"
        undocumented = [c for c in view.column_names if f"`{c}`" not in sections[view.name]]
        assert undocumented == [], f"{view.name}: columns not documented: {undocumented}"


def test_every_example_query_in_the_guide_runs_on_this_dialect(engine: Engine) -> None:
    examples = re.findall(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(examples) >= 8
    counts = [export_report(engine, io.StringIO(), "jsonl", query=sql) for sql in examples]
    assert all(count > 0 for count in counts), dict(zip(examples, counts, strict=True))


# ---------------------------------------------------------------------------------------------- exports


def test_export_a_view_as_jsonl_and_csv(engine: Engine) -> None:
    out = io.StringIO()
    assert export_report(engine, out, "jsonl", view="report_license_counts") == 4
    [first, *rest] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first == {
        "license_url": None,
        "license_type": None,
        "open_access": False,
        "articles": 3,
    }  # most first
    assert sorted(rest, key=lambda r: r["license_url"]) == [
        {"license_url": CC0, "license_type": "cc0", "open_access": True, "articles": 1},
        {"license_url": CC_BY, "license_type": "open-access", "open_access": True, "articles": 1},
        {"license_url": OTHER, "license_type": "publisher", "open_access": False, "articles": 1},
    ]
    out = io.StringIO()
    assert export_report(engine, out, "csv", view="report_last_run_changes") == 1
    [header, row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert header == list(get_view("report_last_run_changes").column_names)
    assert row[:4] == ["2", "harvest pmid (2 ids)", "partial", "2024-05-03T01:00:00+00:00"]
    assert row[8:] == ["pages", '"836548"', '"99"', "pubmed", "2024-05-03T00:30:00+00:00"]


def test_export_a_query(engine: Engine) -> None:
    query = "SELECT pmid, pub_year, citation_count FROM articles WHERE NOT deleted ORDER BY pmid"
    out = io.StringIO()
    assert export_report(engine, out, "csv", query=query) == 6
    assert out.getvalue().splitlines() == [
        "pmid,pub_year,citation_count",
        "101,2022,",
        "102,2021,",
        "103,2020,",
        "105,2022,42",
        "106,2022,",
        "107,2022,",
    ]
    out = io.StringIO()
    sql = "-- the journals\nSELECT journal_key, COUNT(*) AS n FROM journals GROUP BY journal_key ORDER BY 1;"
    assert export_report(engine, out, "jsonl", query=sql) == 2
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"journal_key": "nlm:101568867", "n": 1},
        {"journal_key": "nlm:9999999", "n": 1},
    ]
    out = io.StringIO()
    assert export_report(engine, out, "csv", query="SELECT pmid FROM articles WHERE pmid = 'none'") == 0
    assert out.getvalue() == "pmid\n"  # the header even without rows


def test_percent_signs_and_colons_in_a_query_reach_the_database_as_written(engine: Engine) -> None:
    out = io.StringIO()
    sql = "SELECT '50%' AS share, ':name' AS colon, COUNT(*) AS n FROM articles WHERE doi LIKE '10.5555/%'"
    export_report(engine, out, "jsonl", query=sql)
    assert json.loads(out.getvalue()) == {"share": "50%", "colon": ":name", "n": 3}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "the query is empty"),
        ("  ;  ", "the query is empty"),
        (
            "DELETE FROM articles",
            "must be one SELECT statement (or WITH ... SELECT, VALUES); it starts with 'DELETE'",
        ),
        ("update articles set title = 'x'", "it starts with 'update'"),
        ("/* hi */ DROP TABLE articles", "it starts with 'DROP'"),
        ("PRAGMA query_only = OFF", "it starts with 'PRAGMA'"),
        ("ATTACH DATABASE 'x.db' AS x", "it starts with 'ATTACH'"),
        ("SELECT no_such_column FROM articles", "the query failed: "),
        ("SELECT FROM WHERE", "the query failed: "),
        ("SELECT 1; DELETE FROM articles", "the query failed: "),
    ],
)
def test_a_bad_or_writing_query_is_a_usage_error_and_changes_nothing(
    engine: Engine, query: str, message: str
) -> None:
    before = snapshot(engine)
    with pytest.raises(UsageError) as caught:
        export_report(engine, io.StringIO(), "jsonl", query=query)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert snapshot(engine) == before


def test_the_database_refuses_a_write_the_first_check_lets_through(engine: Engine) -> None:
    before = snapshot(engine)
    if engine.dialect.name == "sqlite":
        writes = [
            "WITH x AS (SELECT 1) DELETE FROM articles",
            "WITH x AS (SELECT 1) UPDATE articles SET title = 'x'",
        ]
    else:
        writes = [
            "SELECT nextval(pg_get_serial_sequence('articles', 'id'))",
            "SELECT id FROM articles FOR UPDATE",
        ]
    for sql in writes:
        with pytest.raises(UsageError, match=r"^the query tried to write \(queries run read-only\): "):
            export_report(engine, io.StringIO(), "jsonl", query=sql)
    if engine.dialect.name == "postgresql":  # a server-side cursor cannot hold a data-changing statement
        with pytest.raises(UsageError, match=r"^the query failed: "):
            export_report(
                engine,
                io.StringIO(),
                "jsonl",
                query="WITH d AS (DELETE FROM articles RETURNING id) SELECT * FROM d",
            )
    assert snapshot(engine) == before


def test_an_unknown_view_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match=r"^unknown view 'report_nope': use one of report_articles_by_year_journal, "
    ):
        get_view("report_nope")
    assert get_view(" REPORT_Retractions ").name == "report_retractions"


def test_a_database_failure_while_reading_is_a_storage_error(engine: Engine) -> None:
    for view, query in (("report_retractions", None), (None, "SELECT pmid FROM articles")):
        with failing_statement(engine, "SELECT"), pytest.raises(StorageError) as caught:
            export_report(engine, io.StringIO(), "jsonl", view=view, query=query)
        assert "disk I/O error" in str(caught.value) and "\n" not in str(caught.value)


def test_the_connection_writes_again_after_a_report_even_a_failed_one(fresh_engine: Engine) -> None:
    with pytest.raises(UsageError):
        export_report(fresh_engine, io.StringIO(), "jsonl", query="SELECT nope")
    export_report(fresh_engine, io.StringIO(), "jsonl", view="report_citation_counts")
    store_articles(fresh_engine, [make_article("201")], url=None, fetched_at=FETCHED)
    with fresh_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pmid FROM articles")).scalars().all() == ["201"]


# ---------------------------------------------------------------------------------------------- streaming


def test_rows_are_fetched_in_batches_through_a_server_side_cursor(engine: Engine) -> None:
    seen: list[tuple[str, dict[str, Any], Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, dict(context.execution_options), cursor))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        export_report(engine, io.StringIO(), "jsonl", view="report_author_articles", batch_size=7)
        export_report(engine, io.StringIO(), "jsonl", query="SELECT pmid FROM articles", batch_size=7)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    selects = [s for s in seen if "SELECT" in s[0] and "FROM" in s[0]]
    assert len(selects) == 2
    for _statement, options, cursor in selects:
        assert options.get("stream_results") is True and options.get("yield_per") == 7
        if engine.dialect.name == "postgresql":
            assert type(cursor).__name__ == "ServerCursor"  # psycopg's named cursor: FETCH n at a time


@pytest.fixture
def probed(fresh_engine: Engine) -> Iterator[tuple[Engine, list[int]]]:
    """The engine with a SQL function probe(x) that returns x and records each call as it is made."""
    calls: list[int] = []
    if fresh_engine.dialect.name == "sqlite":

        def probe(x: int) -> int:
            calls.append(x)
            return x

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.create_function("probe", 1, probe)

    else:
        with fresh_engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION probe(x integer) RETURNS integer LANGUAGE plpgsql VOLATILE AS "
                "$$ BEGIN RAISE NOTICE 'probe'; RETURN x; END $$"
            )

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.add_notice_handler(lambda notice: calls.append(1))

    sa.event.listen(fresh_engine, "connect", on_connect)
    fresh_engine.dispose()  # new connections get the probe
    yield fresh_engine, calls


def test_the_first_rows_are_written_before_the_database_has_produced_the_last(
    probed: tuple[Engine, list[int]],
) -> None:
    engine, calls = probed

    class Watcher(io.StringIO):
        calls_at_first_write: int | None = None

        def write(self, text: str) -> int:
            if self.calls_at_first_write is None:
                self.calls_at_first_write = len(calls)
            return super().write(text)

    rows = 500
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
        "SELECT probe(i) AS i FROM n"
    )
    out = Watcher()
    assert export_report(engine, out, "jsonl", query=sql, batch_size=20) == rows
    assert out.calls_at_first_write is not None
    assert 1 <= out.calls_at_first_write <= 2 * 20  # one batch (and a row read ahead), not the whole result
    assert len(calls) == rows
    assert [json.loads(line)["i"] for line in out.getvalue().splitlines()] == list(range(1, rows + 1))


# ---------------------------------------------------------------------------------------------- values


def test_values_are_made_json_able() -> None:
    paris = timezone(timedelta(hours=2))
    assert _jsonable(datetime(2024, 5, 1, 14, 0, tzinfo=paris)) == "2024-05-01T12:00:00+00:00"
    assert _jsonable(datetime(2024, 5, 1, 12, 0)) == "2024-05-01T12:00:00+00:00"  # naive: stored as UTC
    assert _jsonable(date(2024, 5, 1)) == "2024-05-01"
    assert _jsonable(timedelta(minutes=1, seconds=30)) == 90.0
    assert _jsonable(Decimal("42")) == 42 and isinstance(_jsonable(Decimal("42")), int)
    assert _jsonable(Decimal("0.25")) == 0.25
    assert _jsonable(Decimal("NaN")) == "NaN"
    assert _jsonable(math.inf) == "inf"
    assert _jsonable(b"\x00\xff") == "00ff" and _jsonable(memoryview(b"\x01")) == "01"
    assert _jsonable(True) is True and _jsonable(None) is None and _jsonable("x") == "x"
    assert _jsonable({"a": [Decimal("1"), date(2020, 1, 2)]}) == {"a": [1, "2020-01-02"]}


def test_the_first_check_accepts_reading_statements_however_they_begin() -> None:
    assert _checked_query("SELECT 1;  \n") == "SELECT 1"
    for sql in (
        "select 1",
        "  (SELECT 1)",
        "-- why\nSELECT 1",
        "/* a\nb */ WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1)",
    ):
        assert _checked_query(sql) == sql.rstrip()


# ---------------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean harvest environment and HOME, as tests/test_cli.py's ``home``."""
    for name in list(os.environ):
        if name.startswith("HARVEST_") or name in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN", "XDG_DATA_HOME"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMAIL", "tests@example.org")
    return tmp_path


def test_cli_exports_a_view_to_a_file_and_a_query_to_stdout(
    built: tuple[str, Engine], cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = built
    path = cli_env / "retractions.csv"
    assert (
        run(["--db", url, "export", "--view", "report_retractions", "--format", "csv", "-o", str(path)]) == 0
    )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["pmid"], r["source"], r["position"], r["notice"]) for r in rows] == [
        ("102", "pubmed", "1", ""),
        ("102", "pubmed", "2", "36000001"),
        ("105", "crossref", "1", "10.5555/retraction-of-105"),
    ]
    capsys.readouterr()
    query = "SELECT orcid, pmid FROM report_author_articles WHERE orcid = '0000-0002-1825-0097' ORDER BY pmid"
    assert run(["--db", url, "export", "--query", query]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"orcid": ORCID, "pmid": p} for p in ("101", "102", "103")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--view", "report_nope"], "unknown view 'report_nope'"),
        (["--view", "report_retractions", "--format", "solr"], "--format solr exports articles only"),
        (["--query", "SELECT 1", "--format", "solr"], "--format solr exports articles only"),
        (["--view", "report_retractions", "--query", "SELECT 1"], "give --view or --query, not both"),
        (["--query", "SELECT nope FROM articles"], "the query failed: "),
        (["--query", "DELETE FROM articles"], "must be one SELECT statement"),
        (["--query", "WITH x AS (SELECT 1) DELETE FROM articles"], "the query "),
    ],
)
def test_cli_refuses_bad_exports_with_exit_2_one_line_and_no_file(
    built: tuple[str, Engine],
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    url, engine = built
    before = snapshot(engine)
    path = cli_env / "kept.csv"
    path.write_text("an earlier export\n", encoding="utf-8")
    capsys.readouterr()
    assert run(["--db", url, "export", *args, "-o", str(path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("harvest: error: ") and message in err
    assert "Traceback" not in err
    assert path.read_text(encoding="utf-8") == "an earlier export\n"
    assert sorted(p.name for p in cli_env.iterdir() if p.name.startswith(".kept")) == []
    assert snapshot(engine) == before


def test_cli_export_help_lists_every_view(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--view" in out and "--query" in out
    for view in VIEWS:
        assert f"{view.name}: {view.description}" in out


def test_cli_export_without_view_or_query_still_exports_articles(
    built: tuple[str, Engine], cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = built
    assert run(["--db", url, "export"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(d["pmid"] for d in docs) == ["101", "102", "103", "105", "106", "107"]


def test_statements_of_an_export_are_only_reads(engine: Engine) -> None:
    with recorded_statements(engine) as statements:
        export_report(engine, io.StringIO(), "csv", view="report_open_conflicts")
    writes = [s for s in statements if s.lstrip().split()[0].upper() in {"INSERT", "UPDATE", "DELETE"}]
    assert writes == []
    assert any("query_only" in s or "READ ONLY" in s for s in statements)
