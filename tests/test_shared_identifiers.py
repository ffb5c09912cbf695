"""Issue 13, on both dialects: a DOI two PubMed records share is no conflict, each article shows its own
journal facts, and an aliased DOI matches the article that holds it.

Fixtures (hand-written, PubMed's real format): two versions of one Cochrane review sharing a DOI
(PMIDs 11034741 and 11406024, as in NLM's 2019 sample file), and two records of one journal with
different ISSN sets (PMID 10 electronic only, PMID 11 print only).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.article_state import read_provenance
from db.conflicts import list_conflicts
from db.documents import export_documents, load_documents, resolve_identifiers
from db.reconcile import store_crossref
from db.solr import export_solr
from db.store import store_articles
from harvester.core.records import Article
from harvester.sources.pubmed_xml import parse_pubmed
from tests.db_helpers import crossref_work

FIXTURES = Path(__file__).parent / "fixtures"
COCHRANE = FIXTURES / "efetch_pubmed_cochrane_versions_shared_doi.xml"
ONE_JOURNAL = FIXTURES / "efetch_pubmed_one_journal_two_issn_sets.xml"
COCHRANE_DOI = "10.1002/14651858.cd002020"
AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


def parsed(path: Path) -> list[Article]:
    return [r for r in parse_pubmed(path.read_bytes(), keep_raw=True) if isinstance(r, Article)]


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def ids_of(engine: Engine, *pmids: str) -> list[int]:
    found = resolve_identifiers(engine, list(pmids))
    return [found[p] or 0 for p in pmids]


def test_two_versions_of_a_cochrane_review_share_a_doi_and_both_keep_it(engine: Engine) -> None:
    result = store_articles(engine, parsed(COCHRANE), url=None, fetched_at=AT)
    assert result.created == ("11034741", "11406024") and result.conflicts == ()
    assert rows(engine, "SELECT pmid, doi FROM articles ORDER BY pmid") == [
        ("11034741", COCHRANE_DOI),
        ("11406024", COCHRANE_DOI),
    ]
    assert list_conflicts(engine, status="all") == []
    listed = rows(
        engine,
        "SELECT id_type, value, articles, pmid, title FROM report_shared_identifiers ORDER BY pmid",
    )
    assert [(t, v, n, p) for t, v, n, p, _ in listed] == [
        ("doi", COCHRANE_DOI, 2, "11034741"),
        ("doi", COCHRANE_DOI, 2, "11406024"),
    ]
    assert "first version" in listed[0][4] and "updated version" in listed[1][4]


def test_crossref_enriches_each_version_sharing_the_doi_with_its_own_provenance(engine: Engine) -> None:
    store_articles(engine, parsed(COCHRANE), url=None, fetched_at=AT)
    first, second = ids_of(engine, "11034741", "11406024")
    work = crossref_work("10.1002/14651858.CD002020", **{"is-referenced-by-count": 42})
    result = store_crossref(engine, [work], url=None, fetched_at=AT, run_id=None)
    assert result.conflicts == () and set(result.updated) == {first, second}
    docs = {d["pmid"]: d for d in load_documents(engine)}
    assert docs["11034741"]["citation_count"] == docs["11406024"]["citation_count"] == 42
    with engine.connect() as conn:
        provenance = read_provenance(conn, [first, second])
    for article in (first, second):
        assert provenance[article]["citation_count"]["source"] == "crossref"
        assert provenance[article]["citation_count"]["source_id"] == COCHRANE_DOI
        assert provenance[article]["title"]["source"] == "pubmed"  # each keeps its own title
    assert docs["11034741"]["title"] != docs["11406024"]["title"]


def test_a_crossref_only_article_is_taken_by_the_lowest_pmid_of_records_sharing_its_doi(
    engine: Engine,
) -> None:
    """The rule of db.store: one article not in PubMed, two new records naming its DOI in one batch."""
    work = crossref_work("10.1002/14651858.CD002020")
    [orphan] = store_crossref(
        engine, [work], url=None, fetched_at=AT, run_id=None, create_missing=[COCHRANE_DOI]
    ).created
    result = store_articles(engine, list(reversed(parsed(COCHRANE))), url=None, fetched_at=AT)
    assert result.conflicts == ()
    assert ids_of(engine, "11034741")[0] == orphan  # adopted by the lowest PMID
    assert rows(engine, "SELECT count(*) FROM articles") == [(2,)]
    assert rows(engine, "SELECT count(*) FROM articles WHERE doi = :doi", doi=COCHRANE_DOI) == [(2,)]
    # the next answer from Crossref enriches both
    again = store_crossref(
        engine, [crossref_work("10.1002/14651858.CD002020")], url=None, fetched_at=AT, run_id=None
    )
    assert set(again.updated + again.unchanged) == set(ids_of(engine, "11034741", "11406024"))


def test_each_article_shows_the_issns_its_own_record_gives(engine: Engine) -> None:
    store_articles(engine, parsed(ONE_JOURNAL), url=None, fetched_at=AT)
    # one journal row (by NLM id), which merged both records' ISSNs
    assert rows(engine, "SELECT issn_print, issn_electronic, issn_linking FROM journals") == [
        ("0006-2952", "1873-2968", "0006-2952")
    ]
    docs = {d["pmid"]: d for d in load_documents(engine)}
    assert docs["10"]["journal"]["issn_print"] is None
    assert docs["10"]["journal"]["issn_electronic"] == "1873-2968"
    assert docs["10"]["journal"]["issn"] == "1873-2968"
    assert docs["11"]["journal"]["issn_print"] == "0006-2952"
    assert docs["11"]["journal"]["issn_electronic"] is None
    out = io.StringIO()
    export_documents(engine, "csv", out)
    by_pmid = {r["pmid"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert by_pmid["10"]["issn"] == "1873-2968" and by_pmid["11"]["issn"] == "0006-2952"
    out = io.StringIO()
    export_solr(engine, out)
    solr_docs = json.loads(out.getvalue())
    issns = sorted(tuple(d.get("issn") or ()) for d in solr_docs)
    # PMID 10's record gives its electronic ISSN and the ISSN-L (MedlineJournalInfo), never a print ISSN
    assert issns == [("0006-2952",), ("1873-2968", "0006-2952")]


def test_an_aliased_doi_matches_the_article_holding_it_and_is_recorded(engine: Engine) -> None:
    records = parsed(COCHRANE)[:1]
    store_articles(engine, records, url=None, fetched_at=AT)
    [article] = ids_of(engine, "11034741")
    primary = crossref_work("10.1002/14651858.CD002020.PUB2", **{"is-referenced-by-count": 5})
    result = store_crossref(
        engine,
        [primary],
        url=None,
        fetched_at=AT,
        run_id=None,
        aliases=[("10.1002/14651858.CD002020", "10.1002/14651858.CD002020.PUB2")],
    )
    assert result.updated == (article,) and result.unmatched == ()
    assert rows(
        engine,
        "SELECT value FROM article_identifiers WHERE article_id = :a AND id_type = 'crossref:alias'",
        a=article,
    ) == [(COCHRANE_DOI,)]
    assert rows(engine, "SELECT source_id FROM source_records WHERE source = 'crossref'") == [
        ("10.1002/14651858.cd002020.pub2",)
    ]
    # the alias survives a changed PubMed record, and the work keeps matching without being told again
    raw = records[0].raw_xml
    assert raw is not None
    changed = parse_pubmed(raw.replace(b"first version", b"first version, corrected"), keep_raw=True)
    store_articles(engine, [r for r in changed if isinstance(r, Article)], url=None, fetched_at=AT)
    assert rows(
        engine,
        "SELECT count(*) FROM article_identifiers WHERE article_id = :a AND id_type = 'crossref:alias'",
        a=article,
    ) == [(1,)]
    again = crossref_work("10.1002/14651858.CD002020.PUB2", **{"is-referenced-by-count": 6})
    result = store_crossref(engine, [again], url=None, fetched_at=AT, run_id=None)
    assert result.updated == (article,) and result.unmatched == ()
