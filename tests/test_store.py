"""store_articles and mark_deleted on both dialects: idempotence, updates, payloads, atomicity, conflicts."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy.engine import Engine

from db.documents import load_documents, resolve_identifiers
from db.engine import begin_write, open_database
from db.store import StoreResult, mark_deleted, store_articles, unchanged_pmids
from harvester.core.errors import StorageError
from harvester.core.records import Article, ArticleId, Author, Journal, MeshHeading, PartialDate
from tests.db_helpers import (
    failing_statement,
    make_article,
    recorded_statements,
    row_counts,
    snapshot,
    with_raw,
)

FETCHED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/efetch.fcgi?db=pubmed&id=35350566&api_key=***"
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COPY")  # COPY: PostgreSQL's bulk rows


def store(engine: Engine, *articles: Article, fetched_at: datetime = FETCHED) -> StoreResult:
    return store_articles(engine, articles, url=URL, fetched_at=fetched_at)


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def test_new_articles_fill_every_table(engine: Engine) -> None:
    first, second = make_article("35350566"), make_article("35350567")
    result = store(engine, first, second)
    assert result == StoreResult(created=("35350566", "35350567"), updated=(), unchanged=())
    counts = row_counts(engine)
    expected = {
        "articles": 2,
        "journals": 1,  # both name NLM journal 101568867
        "raw_payloads": 2,
        "source_records": 2,
        "article_identifiers": 2 * 6,  # pubmed, pii, doi, pmc + eloc:doi, eloc:pii
        "authors": 2 * 3,
        "author_affiliations": 2 * 2,
        "abstract_sections": 2 * 3,  # two main sections + one OtherAbstract section
        "article_dates": 2 * 3,
        "article_languages": 2 * 2,
        "publication_types": 2 * 2,
        "mesh_headings": 2 * 3,
        "mesh_qualifiers": 2 * 2,
        "keywords": 2 * 2,
        "chemicals": 2,
        "grants": 2,
        "comments_corrections": 2,
        "article_references": 2 * 3,
        "article_history": 2,  # each article's creation
        "alembic_version": 1,
    }
    assert counts == expected
    row = rows(
        engine,
        "SELECT pmid, doi, pmcid, pub_date, pub_year, epub_date, abstract, retracted, deleted, in_pubmed "
        "FROM articles WHERE pmid = '35350566'",
    )[0]
    assert row[:6] == (
        "35350566",
        "10.3389/fonc.2022.35350566",
        "PMC106051698",
        "2022-03-08",
        2022,
        "2022-03-08",
    )
    assert row[6] == "BACKGROUND: Why we looked.\nRESULTS: What we found."
    assert [bool(v) for v in row[7:]] == [False, False, True]


def test_storing_the_same_records_again_writes_nothing(engine: Engine) -> None:
    articles = [make_article(str(pmid)) for pmid in range(35350566, 35350572)]
    store(engine, *articles)
    store(engine, make_article("35350566", title="A newer title"))  # one article with history
    before = snapshot(engine)
    with recorded_statements(engine) as statements:
        result = store(
            engine,
            make_article("35350566", title="A newer title"),
            *articles[1:],
            fetched_at=FETCHED + timedelta(1),
        )
    assert result.created == result.updated == ()
    assert len(result.unchanged) == 6
    assert [s for s in statements if s.lstrip().upper().startswith(WRITES)] == []
    assert snapshot(engine) == before


def test_sqlite_total_changes_do_not_move_on_an_unchanged_batch(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'h.sqlite'}", busy_timeout=1)
    try:
        article = make_article()
        store(engine, article)
        with engine.connect() as conn:
            driver = conn.connection.dbapi_connection
            assert driver is not None
            before = driver.total_changes
            # the pool hands this same connection to store_articles once it is checked back in
        store(engine, article)
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection is driver
            assert driver.total_changes == before
    finally:
        engine.dispose()


def test_a_changed_record_replaces_its_rows_and_keeps_the_old_payload(engine: Engine) -> None:
    old = make_article("35350566")
    store(engine, old, fetched_at=FETCHED)
    created_at, first_updated = rows(engine, "SELECT created_at, updated_at FROM articles")[0]
    time.sleep(0.01)
    new = make_article(
        "35350566",
        title="Corrected title",
        authors=(Author(1, last_name="Solo", fore_name="Han", initials="H"),),
        mesh=(MeshHeading("Neoplasms", "D009369", major=True),),
        doi="10.3389/fonc.2022.999",
    )
    later = FETCHED + timedelta(days=1)
    result = store(engine, new, fetched_at=later)
    assert result == StoreResult(created=(), updated=("35350566",), unchanged=())
    assert rows(engine, "SELECT title, doi FROM articles") == [("Corrected title", "10.3389/fonc.2022.999")]
    assert rows(engine, "SELECT position, last_name FROM authors") == [(1, "Solo")]
    assert scalar(engine, "SELECT count(*) FROM author_affiliations") == 0
    assert rows(engine, "SELECT descriptor FROM mesh_headings") == [("Neoplasms",)]
    assert scalar(engine, "SELECT count(*) FROM mesh_qualifiers") == 0
    assert scalar(engine, "SELECT count(*) FROM journals") == 1
    # both payloads kept; the source record points at the new one
    assert old.raw_xml is not None and new.raw_xml is not None
    payloads = dict(rows(engine, "SELECT sha256, content FROM raw_payloads"))
    assert {gzip.decompress(c) for c in payloads.values()} == {old.raw_xml, new.raw_xml}
    new_sha = hashlib.sha256(new.raw_xml).hexdigest()
    current = rows(
        engine,
        "SELECT p.sha256, s.fetched_at FROM source_records s JOIN raw_payloads p ON p.id = s.payload_id",
    )
    assert [sha for sha, _ in current] == [new_sha]
    assert scalar(engine, "SELECT content_sha256 FROM articles") == new_sha
    doc = next(load_documents(engine))
    assert doc["created_at"] == _iso(created_at)
    assert doc["updated_at"] > doc["created_at"]
    assert doc["updated_at"] != _iso(first_updated)


def _iso(value: Any) -> str:
    """A timestamp as load_documents renders it, from what the driver returned for the raw column."""
    if isinstance(value, str):  # SQLite returns text to a text() query
        value = datetime.fromisoformat(value)
    return str((value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat())


def test_a_record_that_changes_back_reuses_its_first_payload(engine: Engine) -> None:
    first, second = make_article(), make_article(title="Changed")
    assert store(engine, first).created
    assert store(engine, second).updated
    assert store(engine, first).updated
    assert scalar(engine, "SELECT count(*) FROM raw_payloads") == 2
    assert first.raw_xml is not None
    assert scalar(engine, "SELECT content_sha256 FROM articles") == hashlib.sha256(first.raw_xml).hexdigest()


def test_raw_payload_round_trip(engine: Engine) -> None:
    article = make_article()
    store(engine, article)
    assert article.raw_xml is not None
    (source, source_id, sha, url, fetched_at, encoding, content, size) = rows(
        engine,
        "SELECT source, source_id, sha256, url, fetched_at, content_encoding, content, size "
        "FROM raw_payloads",
    )[0]
    assert (source, source_id, encoding, url) == ("pubmed", "35350566", "gzip", URL)
    assert gzip.decompress(bytes(content)) == article.raw_xml
    assert sha == hashlib.sha256(article.raw_xml).hexdigest()
    assert size == len(article.raw_xml)
    assert _iso(fetched_at) == FETCHED.isoformat()


def test_a_failure_mid_batch_leaves_the_database_as_it_was(engine: Engine) -> None:
    store(engine, make_article("35350566"), make_article("35350567"))
    before = snapshot(engine)
    batch = [make_article("35350566", title="Changed"), make_article("35350599")]
    with (
        failing_statement(engine, ("INSERT INTO mesh_qualifiers", 'COPY "mesh_qualifiers"')),
        pytest.raises(StorageError) as caught,
    ):
        store(engine, *batch)
    assert str(caught.value).startswith("cannot store articles in ")
    assert str(caught.value).endswith(": disk I/O error")
    assert snapshot(engine) == before
    assert store(engine, *batch) == StoreResult(created=("35350599",), updated=("35350566",), unchanged=())


@pytest.mark.parametrize(
    ("driver_message", "shown"),
    [
        ("database is locked", "the database is locked by another writer (gave up waiting)"),
        ("attempt to write a readonly database", "the database is read-only"),
        ("database or disk is full", "the disk is full"),
    ],
)
def test_driver_failures_become_one_line_storage_errors(
    tmp_path: Path, driver_message: str, shown: str
) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'h.sqlite'}")
    try:
        with (
            failing_statement(engine, "INSERT INTO articles", driver_message),
            pytest.raises(StorageError) as e,
        ):
            store(engine, make_article())
        assert str(e.value) == f"cannot store articles in sqlite:///{tmp_path / 'h.sqlite'}: {shown}"
    finally:
        engine.dispose()


def test_a_second_writer_waits_for_the_first(db_url: str) -> None:
    first = open_database(db_url)
    second = open_database(db_url, busy_timeout=10)
    try:
        result: list[StoreResult] = []
        with begin_write(first):
            thread = threading.Thread(target=lambda: result.append(store(second, make_article())))
            thread.start()
            time.sleep(0.3)
            assert thread.is_alive() and result == []  # waiting for the lock, not failing
        thread.join(10)
        assert result == [StoreResult(created=("35350566",), updated=(), unchanged=())]
    finally:
        first.dispose()
        second.dispose()


def test_a_writer_that_waits_too_long_gets_a_storage_error(db_url: str) -> None:
    first = open_database(db_url)
    second = open_database(db_url, busy_timeout=0.2)
    try:
        with begin_write(first), pytest.raises(StorageError, match="locked by another writer"):
            store(second, make_article())
        with begin_write(first), pytest.raises(StorageError, match="locked by another writer"):
            mark_deleted(second, ["35350566"], at=FETCHED)
    finally:
        first.dispose()
        second.dispose()


def test_a_read_only_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    open_database(f"sqlite:///{path}").dispose()
    engine = open_database(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(StorageError, match="read-only"):
            store(engine, make_article())
    finally:
        engine.dispose()


def test_duplicate_pmids_in_a_batch_keep_the_highest_version_then_the_last(engine: Engine) -> None:
    v1_last = make_article("1", title="v1 last")
    batch = [make_article("1", title="v1 first"), make_article("1", title="v2", pmid_version=2), v1_last]
    assert store(engine, *batch) == StoreResult(created=("1",), updated=(), unchanged=())
    assert rows(engine, "SELECT title, pmid_version FROM articles") == [("v2", 2)]
    batch = [make_article("2", title="first"), make_article("2", title="last")]
    store(engine, *batch)
    assert scalar(engine, "SELECT title FROM articles WHERE pmid = '2'") == "last"
    assert scalar(engine, "SELECT count(*) FROM raw_payloads") == 2


def test_an_older_version_than_the_stored_one_is_not_written(engine: Engine) -> None:
    store(engine, make_article("1", title="v2", pmid_version=2))
    before = snapshot(engine)
    assert store(engine, make_article("1", title="v1")) == StoreResult((), (), ("1",))
    assert snapshot(engine) == before


def test_a_doi_or_pmcid_another_pubmed_article_holds_is_shared_not_a_conflict(engine: Engine) -> None:
    """Issue 13: two PMIDs are two articles whatever they share; each holds its own record's DOI and PMCID.

    (Before, the second record lost the value to article_identifiers and was a conflict.)
    """
    store(engine, make_article("1", doi="10.1000/shared", pmcid="PMC1"))
    result = store(
        engine,
        make_article("2", doi="10.1000/SHARED", pmcid="PMC2"),
        make_article("3", doi="10.1000/three", pmcid="PMC2"),
    )
    assert result == StoreResult(created=("2", "3"), updated=(), unchanged=(), conflicts=())
    got = rows(engine, "SELECT pmid, doi, pmcid FROM articles ORDER BY pmid")
    assert got == [
        ("1", "10.1000/shared", "PMC1"),
        ("2", "10.1000/shared", "PMC2"),
        ("3", "10.1000/three", "PMC2"),
    ]
    assert scalar(engine, "SELECT count(*) FROM conflicts") == 0
    shared = rows(engine, "SELECT id_type, value, pmid FROM report_shared_identifiers ORDER BY id_type, pmid")
    assert shared == [
        ("doi", "10.1000/shared", "1"),
        ("doi", "10.1000/shared", "2"),
        ("pmcid", "PMC2", "2"),
        ("pmcid", "PMC2", "3"),
    ]
    # storing the same records again is quiet: nothing written
    assert store(engine, make_article("2", doi="10.1000/SHARED", pmcid="PMC2")).unchanged == ("2",)


def test_articles_may_swap_or_hand_over_dois_within_one_batch(engine: Engine) -> None:
    store(engine, make_article("1", doi="10.1000/a"), make_article("2", doi="10.1000/b"))
    result = store(
        engine,
        make_article("1", doi="10.1000/b"),
        make_article("2", doi="10.1000/c"),
        make_article("3", doi="10.1000/a"),
    )
    assert result == StoreResult(created=("3",), updated=("1", "2"), unchanged=())
    got = rows(engine, "SELECT pmid, doi FROM articles ORDER BY pmid")
    assert got == [("1", "10.1000/b"), ("2", "10.1000/c"), ("3", "10.1000/a")]
    result = store(engine, make_article("1", doi="10.1000/c"), make_article("2", doi="10.1000/b"))
    assert result.updated == ("1", "2") and result.conflicts == ()
    assert rows(engine, "SELECT pmid, doi FROM articles ORDER BY pmid")[:2] == [
        ("1", "10.1000/c"),
        ("2", "10.1000/b"),
    ]


def test_journals_are_shared_and_only_filled_in(engine: Engine) -> None:
    bare = Journal(title="Frontiers in oncology", nlm_unique_id="101568867")
    store(engine, make_article("1", journal=bare))
    fuller = Journal(title="Front. Oncol. (renamed)", iso_abbrev="Front Oncol", nlm_unique_id="101568867")
    store(engine, make_article("2", journal=fuller))
    assert rows(engine, "SELECT journal_key, title, iso_abbrev FROM journals") == [
        ("nlm:101568867", "Frontiers in oncology", "Front Oncol")
    ]
    store(
        engine,
        make_article("3", journal=Journal(title="No NLM id", issn_print="1234-567x")),
        make_article("4", journal=Journal(title="  Only   A Title ")),
        make_article("5", journal=Journal()),
    )
    keys = [key for (key,) in rows(engine, "SELECT journal_key FROM journals ORDER BY journal_key")]
    assert keys == ["issn:1234-567X", "nlm:101568867", "title:only a title"]
    assert scalar(engine, "SELECT journal_id FROM articles WHERE pmid = '5'") is None


def test_mark_deleted_counts_only_articles_it_changed(engine: Engine) -> None:
    store(engine, make_article("1"), make_article("2"))
    deleted_at = datetime.now(UTC) + timedelta(days=9)
    assert mark_deleted(engine, ["1", "1", "404"], at=deleted_at) == 1
    assert mark_deleted(engine, ["1"], at=deleted_at + timedelta(days=1)) == 0
    docs = {d["pmid"]: d for d in load_documents(engine, include_deleted=True)}
    assert (docs["1"]["deleted"], docs["1"]["updated_at"]) == (True, deleted_at.isoformat())
    assert (docs["2"]["deleted"], docs["2"]["updated_at"]) == (False, docs["2"]["created_at"])
    assert [d["pmid"] for d in load_documents(engine)] == ["2"]
    assert mark_deleted(engine, [], at=FETCHED) == 0


def test_a_deleted_article_whose_record_comes_back_changed_is_live_again(engine: Engine) -> None:
    store(engine, make_article("1"))
    mark_deleted(engine, ["1"], at=FETCHED)
    old_file = store_articles(engine, [make_article("1")], url=URL, fetched_at=FETCHED, revive_deleted=False)
    assert old_file.unchanged == ("1",)  # a record that may predate the deletion says nothing new
    assert [d["pmid"] for d in load_documents(engine)] == []
    assert store(engine, make_article("1", title="Reinstated")).updated == ("1",)
    assert [d["title"] for d in load_documents(engine)] == ["Reinstated"]


def test_a_deleted_article_whose_same_record_comes_again_is_live_again(engine: Engine) -> None:
    """PubMed sending the very record again (efetch, a later update file) means it is in PubMed again."""
    store(engine, make_article("1"), make_article("2"))
    mark_deleted(engine, ["1"], at=FETCHED)
    assert unchanged_pmids(engine, {"1": (1, sha_of("1")), "2": (1, sha_of("2"))}) == ({"2"}, set())
    assert unchanged_pmids(engine, {"1": (1, sha_of("1")), "2": (1, sha_of("2"))}, revive_deleted=False) == (
        {"1", "2"},
        set(),
    )
    counts = row_counts(engine)

    revived = store(engine, make_article("1"), make_article("2"), fetched_at=FETCHED + timedelta(days=1))

    assert (revived.updated, revived.unchanged) == (("1",), ("2",))
    assert [d["pmid"] for d in load_documents(engine)] == ["1", "2"]
    assert rows(
        engine,
        "SELECT h.field, h.old_value, h.new_value FROM article_history h "
        "JOIN articles a ON a.id = h.article_id WHERE a.pmid = '1' AND h.field <> 'created' ORDER BY h.id",
    ) == [("deleted", "true", "false")]  # mark_deleted itself writes no history; harvest ingest does
    # the same payload and the same child rows, written again; one history row more
    assert row_counts(engine) == {**counts, "article_history": counts["article_history"] + 1}
    # Live again, the same record is unchanged once more: nothing is written.
    before = snapshot(engine)
    assert store(engine, make_article("1")).unchanged == ("1",)
    assert snapshot(engine) == before


def sha_of(pmid: str) -> str:
    raw = make_article(pmid).raw_xml
    assert raw is not None
    return hashlib.sha256(raw).hexdigest()


def test_records_without_raw_xml_or_a_naive_time_are_refused_before_any_write(engine: Engine) -> None:
    before = snapshot(engine)
    with pytest.raises(ValueError, match="PMID 7: the record has no raw_xml"):
        store(engine, make_article("6"), Article(pmid="7"))
    with pytest.raises(ValueError, match="timezone-aware"):
        store(engine, make_article("6"), fetched_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        mark_deleted(engine, ["6"], at=datetime(2024, 1, 1))
    assert snapshot(engine) == before
    assert store(engine) == StoreResult((), (), ())


def test_many_articles_in_one_call_exceed_one_in_list(engine: Engine) -> None:
    articles = [make_article(str(pmid), doi=None, pmcid=None) for pmid in range(1, 1202)]
    assert len(store(engine, *articles).created) == 1201
    assert len(store(engine, *articles).unchanged) == 1201
    assert scalar(engine, "SELECT count(*) FROM authors") == 3 * 1201


def _pubmed_fixture_files() -> list[Path]:
    files = sorted((Path(__file__).parent / "fixtures").glob("efetch_pubmed_*.xml"))
    shared = os.environ.get("HARVEST_FIXTURES")
    if shared:
        files += sorted((Path(shared) / "eutils-pubmed-xml").glob("*.xml"))
    return files


def test_real_records_from_the_parser_store_read_back_and_store_again_unchanged(engine: Engine) -> None:
    """Every PubMed XML fixture (the shared recorded ones too, when HARVEST_FIXTURES is set)."""
    parser = pytest.importorskip("harvester.sources.pubmed_xml", reason="the PubMed parser is not there yet")
    records = [
        record
        for path in _pubmed_fixture_files()
        for record in parser.parse_pubmed(path.read_bytes(), keep_raw=True)
        if isinstance(record, Article)
    ]
    assert records, "no PubMed XML fixture with articles found"
    latest = {record.pmid: record for record in records}  # a PMID in two files: the last one wins
    result = store_articles(engine, records, url=None, fetched_at=FETCHED)
    assert set(result.created) == set(latest)
    docs = {d["pmid"]: d for d in load_documents(engine, include_deleted=True)}
    assert set(docs) == set(latest)
    for pmid, record in latest.items():
        doc = docs[pmid]
        assert doc["title"] == record.title
        assert doc["abstract"] == ((record.abstract.text or None) if record.abstract else None)
        assert doc["doi"] == record.doi and not result.conflicts
        assert doc["retracted"] == record.retracted
        assert [a["last_name"] for a in doc["authors"]] == [a.last_name for a in record.authors]
        assert [m["descriptor"] for m in doc["mesh"]] == [m.descriptor for m in record.mesh]
        assert doc["references_count"] == len(record.references)
    assert len(store_articles(engine, records, url=None, fetched_at=FETCHED).unchanged) == len(latest)


# Text as a parser would hand it over: no surrogates, no NUL (XML 1.0 cannot carry either).
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_optional = st.none() | _text.filter(bool)


@st.composite
def _articles(draw: st.DrawFn) -> Article:
    pmid = str(draw(st.integers(1, 40)))
    authors = draw(
        st.lists(
            st.builds(
                Author,
                position=st.just(0),
                last_name=_optional,
                fore_name=_optional,
                collective_name=_optional,
                affiliations=st.lists(_text.filter(bool), max_size=2).map(tuple),
                valid=st.booleans(),
            ),
            max_size=4,
        )
    )
    doi = draw(st.none() | st.sampled_from(["10.1000/a", "10.1000/b", "10.1000/c"]))
    article = Article(
        pmid=pmid,
        ids=(ArticleId("doi", doi),) if doi else (),
        title=draw(_optional),
        doi=doi,
        authors=tuple(dataclasses.replace(a, position=i) for i, a in enumerate(authors, 1)),
        languages=tuple(draw(st.lists(st.sampled_from(["eng", "fre", "ger"]), max_size=3))),
        pub_date=draw(st.builds(PartialDate, year=st.none() | st.integers(1800, 2100), season=_optional)),
        mesh=tuple(
            draw(
                st.lists(
                    st.builds(MeshHeading, descriptor=_text.filter(bool), major=st.booleans()), max_size=3
                )
            )
        ),
    )
    return with_raw(article)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(_articles(), min_size=1, max_size=6))
def test_property_stored_records_read_back_and_a_second_store_changes_nothing(
    engine: Engine, batch: list[Article]
) -> None:
    """Whatever the records say, the documents say it back, and storing them again is a no-op."""
    result = store_articles(engine, batch, url=None, fetched_at=FETCHED)
    latest = {a.pmid: a for a in batch}  # equal versions: the last one wins
    assert set(result.created + result.updated + result.unchanged) == set(latest)
    ids = resolve_identifiers(engine, list(latest))
    docs = {d["pmid"]: d for d in load_documents(engine, [i for i in ids.values() if i is not None])}
    for pmid, article in latest.items():
        doc = docs[pmid]
        # A record without a value never erases the stored one (db.store): then anything may be there.
        assert doc["title"] == article.title or article.title is None
        assert doc["pub_date"] == article.pub_date.iso or article.pub_date.iso is None
        assert doc["language"] == list(article.languages)
        assert [(a["last_name"], a["affiliations"], a["valid"]) for a in doc["authors"]] == [
            (a.last_name, list(a.affiliations), a.valid) for a in article.authors
        ]
        assert [(m["descriptor"], m["major"]) for m in doc["mesh"]] == [
            (m.descriptor, m.major) for m in article.mesh
        ]
        if article.doi is not None:  # its own DOI, whatever other articles hold (issue 13)
            assert doc["doi"] == article.doi
    assert result.conflicts == ()
    before = snapshot(engine)
    again = store_articles(engine, batch, url=None, fetched_at=FETCHED)
    assert set(again.unchanged) == set(latest)
    assert snapshot(engine) == before
