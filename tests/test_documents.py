"""Documents read back from the database, lookups by any id form, and JSON Lines / CSV export."""

from __future__ import annotations

import csv
import gc
import io
import json
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import db.documents
from db.article_state import read_provenance
from db.documents import (
    CSV_COLUMNS,
    DOCUMENT_KEYS,
    export_documents,
    load_documents,
    resolve_identifiers,
)
from db.models import metadata
from db.reconcile import store_crossref, store_pmc
from db.solr import export_solr
from db.store import mark_deleted, store_articles
from enrich.crossref_json import parse_crossref_response
from enrich.merge import FIELDS
from enrich.pmc_jats import parse_pmc_articles
from harvester.core.errors import InvalidIdentifierError
from harvester.core.records import Article, ELocationId
from harvester.sources.pubmed_xml import parse_pubmed
from tests.db_helpers import database_params, fresh_database_url, make_article, open_migrated, with_raw

FETCHED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PMC_FETCHED = datetime(2024, 6, 2, 8, 30, tzinfo=UTC)
CROSSREF_FETCHED = datetime(2024, 6, 3, 9, 45, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"

# The keys the README documents and callers rely on.
DOCUMENTED_KEYS = {
    "pmid",
    "pmid_version",
    "pmcid",
    "doi",
    "title",
    "abstract",
    "abstract_sections",
    "journal",
    "pub_date",
    "pub_date_raw",
    "epub_date",
    "authors",
    "language",
    "publication_types",
    "mesh",
    "keywords",
    "chemicals",
    "grants",
    "comments_corrections",
    "references_count",
    "identifiers",
    "medline_status",
    "publication_status",
    "record_type",
    "retracted",
    "deleted",
    "created_at",
    "updated_at",
    # enrichment (PMC, Crossref) and provenance
    "license",
    "licenses",
    "copyright",
    "copyright_year",
    "publisher",
    "subjects",
    "funders",
    "citation_count",
    "crossref_type",
    "crossref_status",
    "pmc_status",
    "in_pubmed",
    "updates",
    "clinical_trials",
    "retraction_sources",
    "disagreements",
    "provenance",
}


@pytest.fixture(params=database_params())
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with fresh_database_url(request.param, tmp_path) as url:
        engine = open_migrated(url)
        yield engine
        engine.dispose()


def store(engine: Engine, *articles: Article) -> None:
    store_articles(engine, articles, url=None, fetched_at=FETCHED)


def test_a_full_record_reads_back_as_the_documented_document(engine: Engine) -> None:
    store(engine, make_article("35350566"))
    (doc,) = load_documents(engine)
    assert list(doc) == list(DOCUMENT_KEYS)
    assert DOCUMENTED_KEYS <= set(doc)
    assert json.loads(json.dumps(doc)) == doc  # JSON-able as it is
    expected_subset = {
        "pmid": "35350566",
        "pmid_version": 1,
        "pmcid": "PMC106051698",
        "doi": "10.3389/fonc.2022.35350566",
        "record_type": "journal-article",
        "title": "Outcomes of therapy 35350566: a cohort study",
        "abstract": "BACKGROUND: Why we looked.\nRESULTS: What we found.",
        "abstract_copyright": "© 2022 The Authors.",
        "abstract_sections": [
            {"label": "BACKGROUND", "nlm_category": "BACKGROUND", "text": "Why we looked."},
            {"label": "RESULTS", "nlm_category": "RESULTS", "text": "What we found."},
        ],
        "other_abstracts": [
            {
                "kind": "Publisher",
                "language": "spa",
                "text": "Resumen en español.",
                "sections": [{"label": None, "nlm_category": None, "text": "Resumen en español."}],
            }
        ],
        "journal": {
            "title": "Frontiers in oncology",
            "iso_abbrev": "Front Oncol",
            "medline_ta": "Front Oncol",
            "issn": "2234-943X",
            "issn_print": None,
            "issn_electronic": "2234-943X",
            "issn_linking": "2234-943X",
            "nlm_unique_id": "101568867",
            "country": "Switzerland",
            "volume": "12",
            "issue": "3",
            "pages": "836548",
        },
        "pub_date": "2022-03-08",
        "pub_year": 2022,
        "pub_date_raw": None,
        "epub_date": "2022-03-08",
        "dates": [
            {"kind": "Electronic", "date": "2022-03-08", "raw": None},
            {"kind": "received", "date": "2021-12-01", "raw": None},
            {"kind": "pubmed", "date": "2022-03-30", "raw": None},
        ],
        "language": ["eng", "fre"],
        "publication_types": ["Journal Article", "Research Support, Non-U.S. Gov't"],
        "keywords": ["cancer", "cohort"],
        "chemicals": [{"name": "Antineoplastic Agents", "registry_number": "0", "ui": "D000970"}],
        "grants": [
            {"grant_id": "R01 CA000001", "acronym": "CA", "agency": "NCI NIH HHS", "country": "United States"}
        ],
        "comments_corrections": [
            {
                "ref_type": "CommentIn",
                "ref_source": "Front Oncol. 2022;12:1",
                "pmid": "35000001",
                "note": None,
            }
        ],
        "references_count": 3,
        "identifiers": {
            "pubmed": "35350566",
            "pii": "S0000-35350566",
            "doi": "10.3389/fonc.2022.35350566",
            "pmc": "PMC106051698",
        },
        "elocation_ids": [
            {"type": "doi", "value": "10.3389/fonc.2022.35350566", "valid": True},
            {"type": "pii", "value": "836548", "valid": True},
        ],
        "medline_status": "MEDLINE",
        "publication_status": "epublish",
        "date_completed": "2022-04-01",
        "date_revised": "2022-04-05",
        "retracted": False,
        "in_pubmed": True,
        "deleted": False,
    }
    assert {key: doc[key] for key in expected_subset} == expected_subset
    assert doc["authors"][0] == {
        "last_name": "Smith",
        "fore_name": "Jane A",
        "initials": "JA",
        "suffix": None,
        "collective_name": None,
        "orcid": "0000-0002-1825-0097",
        "affiliations": ["Dept of Oncology, University X, Lyon, France.", "Institute Y."],
        "valid": True,
        "equal_contrib": True,
    }
    assert [(a["last_name"], a["suffix"], a["valid"]) for a in doc["authors"][1:]] == [
        ("Doe", "Jr", False),
        (None, None, True),
    ]
    assert doc["authors"][2]["collective_name"] == "The ONCO Study Group"
    assert doc["mesh"][1] == {
        "descriptor": "Neoplasms",
        "ui": "D009369",
        "major": False,
        "type": None,
        "qualifiers": [
            {"name": "therapy", "ui": "Q000628", "major": True},
            {"name": "diagnosis", "ui": "Q000175", "major": False},
        ],
    }
    assert doc["mesh"][2]["type"] == "Geographic"
    created = datetime.fromisoformat(doc["created_at"])
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert doc["updated_at"] == doc["created_at"]


def test_a_sparse_record_has_every_key_with_none_or_empty(engine: Engine) -> None:
    store(engine, with_raw(Article(pmid="42")))
    (doc,) = load_documents(engine)
    assert list(doc) == list(DOCUMENT_KEYS)
    for key in (
        "authors",
        "abstract_sections",
        "other_abstracts",
        "language",
        "mesh",
        "keywords",
        "grants",
        "licenses",
        "subjects",
        "funders",
        "updates",
        "clinical_trials",
        "retraction_sources",
        "disagreements",
    ):
        assert doc[key] == [], key
    for key in (
        "pmcid",
        "doi",
        "title",
        "abstract",
        "pub_date",
        "epub_date",
        "pub_date_raw",
        "medline_status",
        "license",
        "copyright",
        "copyright_year",
        "publisher",
        "citation_count",
        "crossref_type",
        "crossref_status",
        "pmc_status",
    ):
        assert doc[key] is None, key
    assert doc["provenance"] == {}  # PubMed stated nothing the merge tracks
    assert doc["identifiers"] == {}
    assert doc["references_count"] == 0
    assert set(doc["journal"]) >= {"title", "iso_abbrev", "issn", "volume", "issue", "pages"}
    assert all(value is None for value in doc["journal"].values())


def test_identifiers_resolve_in_every_form(engine: Engine) -> None:
    store(
        engine, make_article("35350566"), make_article("8958025", doi="10.1000/Other.DOI", pmcid="PMC8958025")
    )
    first = resolve_identifiers(engine, ["35350566"])["35350566"]
    second = resolve_identifiers(engine, ["8958025"])["8958025"]
    assert first is not None and second is not None and first != second
    forms = {
        "35350566": first,
        " PMID: 35350566 ": first,
        "035350566": first,
        "PMC106051698": first,
        "pmc106051698": first,
        "PMC106051698.2": first,
        "10.3389/fonc.2022.35350566": first,
        "10.3389/FONC.2022.35350566": first,
        "doi:10.3389/fonc.2022.35350566": first,
        "https://doi.org/10.3389/FONC.2022.35350566": first,
        "http://dx.doi.org/10.3389/fonc.2022.35350566": first,
        "8958025": second,  # digits alone are a PMID, even where a PMCID has the same digits
        "PMC8958025": second,
        "10.1000/other.doi": second,
        "PMC999": None,
        "99999999": None,
        "10.1000/unknown": None,
    }
    assert resolve_identifiers(engine, list(forms)) == forms


def test_a_doi_found_only_among_identifiers_still_resolves(engine: Engine) -> None:
    # A shared DOI (issue 13; before, the second article lost it and showed doi None): both hold it, and
    # the identifier names the first stored.
    store(engine, make_article("1", doi="10.1000/shared"), make_article("2", doi="10.1000/shared"))
    first, second = (resolve_identifiers(engine, [p])[p] for p in ("1", "2"))
    assert resolve_identifiers(engine, ["10.1000/SHARED"]) == {"10.1000/SHARED": first}
    (doc,) = load_documents(engine, [second])  # type: ignore[list-item]
    assert doc["doi"] == "10.1000/shared" and doc["identifiers"]["doi"] == "10.1000/shared"
    eloc_only = make_article(
        "3", doi="10.1000/three", elocation_ids=(ELocationId("doi", "10.1000/ELOC-Only"),)
    )
    store(engine, eloc_only)
    third = resolve_identifiers(engine, ["3"])["3"]
    assert third is not None
    assert resolve_identifiers(engine, ["doi:10.1000/eloc-only"]) == {"doi:10.1000/eloc-only": third}


@pytest.mark.parametrize("bad", ["hello", "PMCxyz", "0", "10.12/x", ""])
def test_a_malformed_identifier_is_a_usage_error(engine: Engine, bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        resolve_identifiers(engine, ["35350566", bad])


def test_documents_come_in_the_order_asked_and_skip_deleted_unless_asked(engine: Engine) -> None:
    store(engine, *(make_article(str(p)) for p in (11, 12, 13)))
    ids = resolve_identifiers(engine, ["13", "11", "12"])
    order = [ids["13"], ids["11"], ids["12"], ids["13"], 999_999]
    assert [d["pmid"] for d in load_documents(engine, order)] == ["13", "11", "12"]  # type: ignore[arg-type]
    mark_deleted(engine, ["11"], at=FETCHED)
    assert [d["pmid"] for d in load_documents(engine, order)] == ["13", "12"]  # type: ignore[arg-type]
    assert [d["pmid"] for d in load_documents(engine, order, include_deleted=True)] == ["13", "11", "12"]  # type: ignore[arg-type]
    assert list(load_documents(engine, [])) == []


def test_all_documents_stream_in_id_order_across_chunks(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db.documents, "CHUNK", 2)
    pmids = [str(p) for p in range(100, 107)]
    store(engine, *(make_article(p, doi=None, pmcid=None) for p in reversed(pmids)))
    mark_deleted(engine, ["103"], at=FETCHED)
    docs = list(load_documents(engine))
    assert [d["pmid"] for d in docs] == [
        p for p in reversed(pmids) if p != "103"
    ]  # stored in reverse: id order
    assert all(len(d["authors"]) == 3 for d in docs)  # children of every chunk, not only the first
    assert len(list(load_documents(engine, include_deleted=True))) == 7


def test_a_streamed_export_is_one_snapshot_while_a_harvest_writes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db.documents, "CHUNK", 1)
    store(engine, *(make_article(str(p), doi=None, pmcid=None) for p in (1, 2, 3)))
    stream = load_documents(engine)
    assert next(stream)["pmid"] == "1"
    # another writer commits while the export is half-way
    store(
        engine,
        make_article("4", doi=None, pmcid=None),
        make_article("2", title="Changed", doi=None, pmcid=None),
    )
    assert mark_deleted(engine, ["3"], at=FETCHED) == 1
    rest = list(stream)
    assert [(d["pmid"], d["title"], d["deleted"]) for d in rest] == [
        ("2", "Outcomes of therapy 2: a cohort study", False),
        ("3", "Outcomes of therapy 3: a cohort study", False),
    ]
    assert [d["pmid"] for d in load_documents(engine)] == ["1", "2", "4"]


def test_jsonl_export_parses_back_to_the_documents(engine: Engine) -> None:
    store(engine, make_article("1"), make_article("2", title='Quotes " and\nnewlines, ünïcödé'))
    mark_deleted(engine, ["1"], at=FETCHED)
    out = io.StringIO()
    assert export_documents(engine, "jsonl", out) == 1
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert [json.loads(line) for line in lines] == list(load_documents(engine))
    out = io.StringIO()
    assert export_documents(engine, "jsonl", out, include_deleted=True) == 2
    assert [json.loads(line)["pmid"] for line in out.getvalue().splitlines()] == ["1", "2"]


def test_csv_export_flattens_each_article_into_one_row(engine: Engine) -> None:
    store(engine, make_article("1"), with_raw(Article(pmid="2", title='A "quoted", comma title')))
    out = io.StringIO()
    assert export_documents(engine, "csv", out) == 2
    reader = csv.DictReader(io.StringIO(out.getvalue()))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    full, sparse = list(reader)
    assert full["pmid"] == "1"
    assert full["abstract"] == "BACKGROUND: Why we looked.\nRESULTS: What we found."
    assert full["authors"] == "Smith, Jane A; Doe, John; The ONCO Study Group"
    assert full["orcids"] == "0000-0002-1825-0097"
    assert full["journal"] == "Frontiers in oncology"
    assert full["issn"] == "2234-943X"
    assert full["language"] == "eng; fre"
    assert full["mesh"] == "Humans; Neoplasms; France"
    assert full["grants"] == "NCI NIH HHS R01 CA000001"
    assert (full["retracted"], full["deleted"], full["references_count"]) == ("false", "false", "3")
    assert full["created_at"].endswith("+00:00")
    assert sparse["title"] == 'A "quoted", comma title'
    assert sparse["authors"] == sparse["doi"] == sparse["pub_year"] == ""


def test_an_unknown_export_format_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        export_documents(engine, "xml", io.StringIO())  # type: ignore[arg-type]


def test_the_real_35350566_record_reads_back(engine: Engine) -> None:
    data = (FIXTURES / "efetch_pubmed_35350566.xml").read_bytes()
    (record,) = [r for r in parse_pubmed(data, keep_raw=True) if isinstance(r, Article)]
    store(engine, record)
    ids = resolve_identifiers(engine, ["35350566", "PMC8958025", "https://doi.org/10.3389/FONC.2022.836548"])
    assert len(set(ids.values())) == 1 and None not in ids.values()
    (doc,) = load_documents(engine, list(ids.values()))  # type: ignore[arg-type]
    assert doc["pmid"] == "35350566"
    assert doc["pmcid"] == "PMC8958025"
    assert doc["doi"] == "10.3389/fonc.2022.836548"
    assert doc["title"] == "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
    assert doc["journal"]["title"] == "Frontiers in oncology"
    assert doc["journal"]["issn"] == "2234-943X"
    assert doc["language"] == ["eng"]
    assert doc["authors"][0]["last_name"] == "Liu"


def store_35350566_with_enrichment(engine: Engine) -> int:
    """The real records of 35350566 stored as the pipeline stores them: PubMed, then PMC, then Crossref."""
    data = (FIXTURES / "efetch_pubmed_35350566.xml").read_bytes()
    store(engine, *(r for r in parse_pubmed(data, keep_raw=True) if isinstance(r, Article)))
    fronts = list(parse_pmc_articles((FIXTURES / "efetch_pmc_PMC8958025.xml").read_bytes(), keep_raw=True))
    store_pmc(engine, fronts, url=None, fetched_at=PMC_FETCHED, run_id=None)
    works = parse_crossref_response((FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json").read_bytes())
    store_crossref(engine, works, url=None, fetched_at=CROSSREF_FETCHED, run_id=None)
    return only_id(engine, "35350566")


def test_the_real_record_enriched_from_pmc_and_crossref_reads_back(engine: Engine) -> None:
    article_id = store_35350566_with_enrichment(engine)
    (doc,) = load_documents(engine, [article_id])
    assert list(doc) == list(DOCUMENT_KEYS)
    license_url = "https://creativecommons.org/licenses/by/4.0/"
    expected = {
        "title": "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis",
        "publisher": "Frontiers Media S.A.",  # PMC's, preferred to Crossref's "Frontiers Media SA"
        "license": {"url": license_url, "type": "open-access"},
        "copyright": "Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang",
        "copyright_year": 2022,
        "subjects": ["Oncology"],  # PMC's; Crossref also says "Cancer Research"
        "funders": [],
        "citation_count": 42,
        "references_count": 128,  # Crossref's count; PubMed's record lists none
        "crossref_type": "journal-article",
        "crossref_status": "found",
        "pmc_status": "found",
        "updates": [],
        "clinical_trials": [],
        "retracted": False,
        "retraction_sources": [],
        "in_pubmed": True,
        "disagreements": [],  # "Frontiers in oncology" / "Frontiers in Oncology" and the like agree
    }
    assert {key: doc[key] for key in expected} == expected
    assert [(lic["url"], lic["type"], lic["start"]) for lic in doc["licenses"]] == [
        (license_url, "open-access", None)
    ]
    assert doc["licenses"][0]["text"].startswith("This is an open-access article distributed under the terms")
    pubmed = {"source": "pubmed", "source_id": "35350566", "fetched_at": FETCHED.isoformat()}
    pmc = {"source": "pmc", "source_id": "PMC8958025", "fetched_at": PMC_FETCHED.isoformat()}
    crossref = {
        "source": "crossref",
        "source_id": "10.3389/fonc.2022.836548",
        "fetched_at": CROSSREF_FETCHED.isoformat(),
    }
    assert doc["provenance"] == {
        **dict.fromkeys(
            [
                "title",
                "abstract",
                "authors",
                "journal_title",
                "journal_iso_abbrev",
                "issn",
                "volume",
                "pub_date",
                "epub_date",
                "doi",
                "pmcid",
            ],
            pubmed,
        ),
        **dict.fromkeys(["publisher", "license", "licenses", "copyright", "copyright_year", "subjects"], pmc),
        **dict.fromkeys(["citation_count", "references_count", "crossref_type"], crossref),
    }
    with engine.connect() as conn:
        assert doc["provenance"] == read_provenance(conn, [article_id])[article_id]


# ------------------------------------------------------------------------- enrichment and provenance


def add_enrichment(engine: Engine, *article_ids: int) -> None:
    """Rows as the reconciliation layer writes them for articles enriched from PMC and Crossref."""
    t = metadata.tables
    with engine.begin() as conn:
        conn.execute(
            sa.update(t["articles"])
            .where(t["articles"].c.id.in_(article_ids))
            .values(
                publisher="Frontiers Media S.A.",
                license_url="https://creativecommons.org/licenses/by/4.0/",
                license_type="open-access",
                copyright="Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang",
                copyright_year=2022,
                citation_count=42,
                references_count=128,
                crossref_type="journal-article",
                crossref_status="found",
                pmc_status="found",
                retracted=True,
            )
        )

        def insert(name: str, *rows: dict[str, Any]) -> None:
            conn.execute(sa.insert(t[name]), [{"article_id": i, **row} for i in article_ids for row in rows])

        insert(
            "article_licenses",
            {
                "position": 1,
                "url": "https://creativecommons.org/licenses/by/4.0/",
                "license_type": "open-access",
                "text": "This is an open-access article.",
                "start_date": None,
            },
            {
                "position": 2,
                "url": "https://creativecommons.org/licenses/by/4.0/",
                "license_type": "vor",
                "text": None,
                "start_date": "2022-03-08",
            },
        )
        insert(
            "article_subjects",
            {"position": 2, "subject": "Cancer Research"},
            {"position": 1, "subject": "Oncology"},
        )
        insert(
            "article_funders",
            {
                "position": 1,
                "name": "National Natural Science Foundation of China",
                "funder_doi": "10.13039/501100001809",
            },
            {"position": 2, "name": "Jilin University", "funder_doi": None},
        )
        insert(
            "funder_awards",
            {"funder_position": 1, "position": 2, "award_id": "81972345"},
            {"funder_position": 1, "position": 1, "award_id": "81872123"},
        )
        insert(
            "article_updates",
            {
                "position": 1,
                "kind": "retraction",
                "direction": "updated-by",
                "doi": "10.3389/fonc.2023.1",
                "asserted_by": "publisher",
                "update_date": "2023-01-05",
                "label": "Retraction",
            },
        )
        insert("article_clinical_trials", {"position": 1, "number": "NCT01234567"})
        insert(
            "retraction_sources",
            {
                "source": "pubmed",
                "position": 1,
                "statement": "PublicationType: Retracted Publication",
                "notice": None,
            },
            {
                "source": "crossref",
                "position": 1,
                "statement": "updated-by retraction 10.3389/fonc.2023.1 (publisher)",
                "notice": "10.3389/fonc.2023.1",
            },
        )
        insert(
            "field_disagreements",
            {
                "field": "publisher",
                "source": "crossref",
                "value": "Frontiers Media SA",
                "other_source": "pubmed",
                "other_value": "Frontiers",
                "detected_at": CROSSREF_FETCHED,
            },
            {
                "field": "journal_title",
                "source": "crossref",
                "value": "Frontiers in Oncology",
                "other_source": "pmc",
                "other_value": "Front. Oncol.",
                "detected_at": CROSSREF_FETCHED,
            },
        )
        insert(
            "field_provenance",
            *(
                {"field": name, "source": "pmc", "source_id": "PMC8958025", "fetched_at": PMC_FETCHED}
                for name in ("publisher", "license", "licenses", "copyright", "copyright_year", "subjects")
            ),
            *(
                {
                    "field": name,
                    "source": "crossref",
                    "source_id": "10.3389/fonc.2022.836548",
                    "fetched_at": CROSSREF_FETCHED,
                }
                for name in (
                    "citation_count",
                    "references_count",
                    "crossref_type",
                    "funders",
                    "updates",
                    "clinical_trials",
                )
            ),
        )


def only_id(engine: Engine, identifier: str) -> int:
    article_id = resolve_identifiers(engine, [identifier])[identifier]
    assert article_id is not None
    return article_id


def test_enrichment_reads_back_with_the_provenance_of_every_field(engine: Engine) -> None:
    store(engine, make_article("35350566"))
    add_enrichment(engine, only_id(engine, "35350566"))
    (doc,) = load_documents(engine)
    assert list(doc) == list(DOCUMENT_KEYS)
    assert json.loads(json.dumps(doc)) == doc
    expected = {
        "publisher": "Frontiers Media S.A.",
        "license": {"url": "https://creativecommons.org/licenses/by/4.0/", "type": "open-access"},
        "licenses": [
            {
                "url": "https://creativecommons.org/licenses/by/4.0/",
                "type": "open-access",
                "text": "This is an open-access article.",
                "start": None,
            },
            {
                "url": "https://creativecommons.org/licenses/by/4.0/",
                "type": "vor",
                "text": None,
                "start": "2022-03-08",
            },
        ],
        "copyright": "Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang",
        "copyright_year": 2022,
        "subjects": ["Oncology", "Cancer Research"],  # in position order
        "funders": [
            {
                "name": "National Natural Science Foundation of China",
                "doi": "10.13039/501100001809",
                "awards": ["81872123", "81972345"],
            },
            {"name": "Jilin University", "doi": None, "awards": []},
        ],
        "citation_count": 42,
        "references_count": 128,  # Crossref's count, not the 3 references PubMed lists
        "crossref_type": "journal-article",
        "crossref_status": "found",
        "pmc_status": "found",
        "updates": [
            {
                "kind": "retraction",
                "direction": "updated-by",
                "doi": "10.3389/fonc.2023.1",
                "asserted_by": "publisher",
                "date": "2023-01-05",
                "label": "Retraction",
            }
        ],
        "clinical_trials": ["NCT01234567"],
        "retracted": True,
        "retraction_sources": [
            {
                "source": "crossref",
                "statement": "updated-by retraction 10.3389/fonc.2023.1 (publisher)",
                "notice": "10.3389/fonc.2023.1",
            },
            {"source": "pubmed", "statement": "PublicationType: Retracted Publication", "notice": None},
        ],
        "in_pubmed": True,
        "disagreements": [
            {
                "field": "journal_title",
                "source": "crossref",
                "value": "Frontiers in Oncology",
                "other_source": "pmc",
                "other_value": "Front. Oncol.",
                "detected_at": CROSSREF_FETCHED.isoformat(),
            },
            {
                "field": "publisher",
                "source": "crossref",
                "value": "Frontiers Media SA",
                "other_source": "pubmed",
                "other_value": "Frontiers",
                "detected_at": CROSSREF_FETCHED.isoformat(),
            },
        ],
    }
    assert {key: doc[key] for key in expected} == expected
    pubmed = {"source": "pubmed", "source_id": "35350566", "fetched_at": FETCHED.isoformat()}
    pmc = {"source": "pmc", "source_id": "PMC8958025", "fetched_at": PMC_FETCHED.isoformat()}
    crossref = {
        "source": "crossref",
        "source_id": "10.3389/fonc.2022.836548",
        "fetched_at": CROSSREF_FETCHED.isoformat(),
    }
    assert doc["provenance"] == {
        # every field with a value and no row is PubMed's, in enrich.merge's order of fields
        **dict.fromkeys(
            [
                "title",
                "abstract",
                "authors",
                "journal_title",
                "journal_iso_abbrev",
                "issn",
                "volume",
                "issue",
                "pages",
                "pub_date",
                "epub_date",
                "keywords",
                "doi",
                "pmcid",
            ],
            pubmed,
        ),
        **dict.fromkeys(["publisher", "license", "licenses", "copyright", "copyright_year", "subjects"], pmc),
        **dict.fromkeys(
            ["citation_count", "references_count", "crossref_type", "funders", "updates", "clinical_trials"],
            crossref,
        ),
    }
    assert list(doc["provenance"]) == [name for name in FIELDS if name in doc["provenance"]]
    with engine.connect() as conn:  # the reconciliation layer's reading of the same rule
        assert (
            doc["provenance"]
            == read_provenance(conn, [only_id(engine, "35350566")])[only_id(engine, "35350566")]
        )


def test_an_article_not_in_pubmed_has_no_pubmed_provenance(engine: Engine) -> None:
    t = metadata.tables
    with engine.begin() as conn:
        article_id = conn.execute(
            sa.insert(t["articles"])
            .values(
                doi="10.1000/crossref-only",
                title="Known only to Crossref",
                publisher="Written by hand",  # a value no source record accounts for
                in_pubmed=False,
                crossref_status="found",
                crossref_type="posted-content",
                created_at=FETCHED,
                updated_at=FETCHED,
            )
            .returning(t["articles"].c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(t["field_provenance"]),
            [
                {
                    "article_id": article_id,
                    "field": field,
                    "source": "crossref",
                    "source_id": "10.1000/crossref-only",
                    "fetched_at": CROSSREF_FETCHED,
                }
                for field in ("title", "doi", "crossref_type", "abstract")  # no abstract any more
            ],
        )
    (doc,) = load_documents(engine)
    assert (doc["pmid"], doc["in_pubmed"], doc["crossref_status"], doc["pmc_status"]) == (
        None,
        False,
        "found",
        None,
    )
    crossref = {
        "source": "crossref",
        "source_id": "10.1000/crossref-only",
        "fetched_at": CROSSREF_FETCHED.isoformat(),
    }
    assert doc["provenance"] == {
        "title": crossref,
        "doi": crossref,
        "publisher": {"source": "unknown", "source_id": "", "fetched_at": FETCHED.isoformat()},
        "crossref_type": crossref,
    }
    with engine.connect() as conn:
        assert doc["provenance"] == read_provenance(conn, [article_id])[article_id]
    assert resolve_identifiers(engine, ["doi:10.1000/CROSSREF-ONLY"]) == {
        "doi:10.1000/CROSSREF-ONLY": article_id
    }


def test_csv_has_the_enrichment_columns(engine: Engine) -> None:
    store(engine, make_article("1"), with_raw(Article(pmid="2")))
    add_enrichment(engine, only_id(engine, "1"))
    out = io.StringIO()
    export_documents(engine, "csv", out)
    enriched, sparse = csv.DictReader(io.StringIO(out.getvalue()))
    enrichment_columns = CSV_COLUMNS[
        CSV_COLUMNS.index("license_url") : CSV_COLUMNS.index("retraction_sources") + 1
    ]
    assert {key: enriched[key] for key in enrichment_columns} == {
        "license_url": "https://creativecommons.org/licenses/by/4.0/",
        "publisher": "Frontiers Media S.A.",
        "subjects": "Oncology; Cancer Research",
        "citation_count": "42",
        "funders": "National Natural Science Foundation of China (81872123, 81972345); Jilin University",
        "retraction_sources": (
            "crossref: updated-by retraction 10.3389/fonc.2023.1 (publisher); "
            "pubmed: PublicationType: Retracted Publication"
        ),
    }
    assert (enriched["retracted"], enriched["references_count"]) == ("true", "128")
    assert all(sparse[key] == "" for key in enrichment_columns)


class _Discard(io.StringIO):
    """A text sink that keeps nothing, so only the export's own memory is measured."""

    def write(self, text: str) -> int:
        return len(text)


def _export_peak(export: Callable[[TextIO], int]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        export(_Discard())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_memory_does_not_grow_with_the_table(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db.documents, "CHUNK", 10)
    exports: dict[str, Callable[[TextIO], int]] = {
        "jsonl": lambda out: export_documents(engine, "jsonl", out),
        "csv": lambda out: export_documents(engine, "csv", out),
        "solr": lambda out: export_solr(engine, out),
    }

    def add(start: int, count: int) -> None:
        pmids = [str(p) for p in range(start, start + count)]
        store(engine, *(make_article(p) for p in pmids))
        add_enrichment(engine, *(i for i in resolve_identifiers(engine, pmids).values() if i is not None))

    add(1000, 20)
    for export in exports.values():
        export(_Discard())  # warm up: statement caches, lazily imported modules
    small = {fmt: _export_peak(export) for fmt, export in exports.items()}
    add(2000, 80)
    large = {fmt: _export_peak(export) for fmt, export in exports.items()}
    # five times the articles, about the same peak; reading them all at once would take five times as much
    assert all(large[fmt] < small[fmt] * 1.5 for fmt in exports), (small, large)
