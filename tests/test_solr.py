"""VuFind Solr documents: the catalogue record of PMID 35350566 reproduced, ids, field rules, export."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st
from sqlalchemy.engine import Engine

import db.documents
from db.documents import load_documents
from db.reconcile import store_crossref, store_pmc
from db.solr import (
    LANGUAGE_NAMES,
    MULTI_VALUED,
    export_solr,
    language_name,
    solr_document,
    solr_id,
    strip_articles,
    work_keys,
)
from db.store import mark_deleted, store_articles
from enrich.crossref_json import parse_crossref_response
from enrich.pmc_jats import parse_pmc_articles
from harvester.core.records import Article
from harvester.sources.pubmed_xml import parse_pubmed
from tests.db_helpers import database_params, fresh_database_url, make_article, open_migrated, with_raw

FETCHED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).parent / "fixtures"
SEED_NAME = "catalogue-record-35350566.txt"

TITLE = "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
ABSTRACT = (
    "Exosomes are lipid membrane bilayer-encapsulated vesicles secreted by cells into the extracellular "
    "space. They carry abundant inclusions (such as nucleic acids, proteins, and lipids) that play pivotal "
    "roles in intercellular communication. Tumor stem cells are capable of self-renewal and are crucial for "
    "survival, proliferation, drug resistance, metastasis, and recurrence of tumors. The miRNAs (microRNAs) "
    "in exosomes have various functions, such as participating in inflammatory response, cell migration, "
    "proliferation, apoptosis, autophagy, and epithelial-mesenchymal transition. Tumor stem cells secrete "
    "exosomes that act as important messengers involved in various tumor processes and several studies "
    "provide increasing evidence supporting the importance of these exosomes in tumor recurrence and "
    "metastasis. This review primarily focuses on the production and secretion of exosomes from tumors and "
    "tumor stem cells and their effects on cancer progression. Cancer stem cancer derived exosome play an "
    "important massager in the tumor microenvironment. It also emphasizes on the study of tumor stem cell "
    "exosomes in the light of cancer metastasis and recurrence aiming to provide valuable insights and novel "
    "perspectives, which could be beneficial for developing effective diagnostic and treatment strategies."
)
AUTHORS = ["Liu, Kun", "Gao, Xin", "Kang, Baoqiang", "Liu, Yunpeng", "Wang, Dingding", "Wang, Yi"]

# The catalogue record of PMID 35350566 / PMC8958025 (a VuFind PMC harvest), the fields compared: the
# seed's facts, kept here because the seed itself lives outside the repository. A test below checks them
# against the seed whenever it is at hand, so the two cannot drift apart.
SEED_FIELDS: dict[str, Any] = {
    "id": "pubmed-8958025",
    "title": TITLE,
    "title_short": TITLE,
    "title_full": TITLE,
    "title_fullStr": TITLE,
    "title_full_unstemmed": TITLE,
    "title_sort": "role of tumor stem cell exosomes in cancer invasion and metastasis",
    "author": AUTHORS,
    "author_facet": AUTHORS,
    "author_sort": "Liu, Kun",
    "description": ABSTRACT,
    "format": ["Online", "Article", "Text"],
    "language": ["English"],
    "publishDate": ["2022"],
    "publisher": ["Frontiers Media S.A."],
    "topic": ["Oncology"],
    "url": [
        "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC8958025/",
        "https://www.ncbi.nlm.nih.gov/pubmed/35350566",
        "http://dx.doi.org/10.3389/fonc.2022.836548",
    ],
    "collection": ["PubMed"],
    "institution": ["National Center for Biotechnology Information"],
    "record_format": "MEDLINE/PubMed",
    "spellingShingle": ["Oncology", *AUTHORS, TITLE],
    "work_keys_str_mv": [
        f"AT {name} {title}"
        for title in (
            "theroleoftumorstemcellexosomesincancerinvasionandmetastasis",
            "roleoftumorstemcellexosomesincancerinvasionandmetastasis",
        )
        for name in ("liukun", "gaoxin", "kangbaoqiang", "liuyunpeng", "wangdingding", "wangyi")
    ],
}


def parse_catalogue_record(text: str) -> dict[str, Any]:
    """The Solr fields of a catalogue record page: from ``_version_`` on, "name value" lines, a value's
    further lines being further values; fields of :data:`MULTI_VALUED` always lists."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("_version_ "))
    values: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[start:]:
        name, _, value = line.partition(" ")
        if re.fullmatch(r"[a-z_][A-Za-z_]*", name):
            current = values.setdefault(name, [])
            current.append(value)
        elif line:
            current.append(line)
    return {
        name: found if name in MULTI_VALUED or len(found) > 1 else found[0] for name, found in values.items()
    }


def enriched_document() -> dict[str, Any]:
    """A document of 35350566 as load_documents gives it once PMC and Crossref have been merged in."""
    return {
        "pmid": "35350566",
        "pmcid": "PMC8958025",
        "doi": "10.3389/fonc.2022.836548",
        "record_type": "journal-article",
        "title": TITLE,
        "abstract": ABSTRACT,
        "journal": {
            "title": "Frontiers in oncology",
            "issn": "2234-943X",
            "issn_print": None,
            "issn_electronic": "2234-943X",
            "issn_linking": "2234-943X",
            "volume": "12",
            "issue": None,
            "pages": "836548",
        },
        "pub_year": 2022,
        "pub_date": "2022",
        "epub_date": "2022-03-08",
        "authors": [
            {
                "last_name": last,
                "fore_name": fore,
                "initials": fore[0],
                "suffix": None,
                "collective_name": None,
            }
            for last, fore in (name.split(", ") for name in AUTHORS)
        ],
        "language": ["eng"],
        "mesh": [],
        "publisher": "Frontiers Media S.A.",
        "subjects": ["Oncology"],
        "crossref_type": "journal-article",
        "in_pubmed": True,
        "deleted": False,
    }


def test_the_catalogue_record_of_35350566_is_reproduced_from_its_document() -> None:
    solr = solr_document(enriched_document())
    assert {key: solr.get(key) for key in SEED_FIELDS} == SEED_FIELDS
    assert json.loads(json.dumps(solr)) == solr


def test_the_expected_fields_are_the_seed_record_s() -> None:
    root = os.environ.get("HARVEST_FIXTURES")
    if not root:
        pytest.skip("HARVEST_FIXTURES is not set: the seed catalogue record lives beside the fixtures")
    seed = Path(root).parent / "seed" / SEED_NAME
    parsed = parse_catalogue_record(seed.read_text(encoding="utf-8"))
    assert {key: parsed.get(key) for key in SEED_FIELDS} == SEED_FIELDS


def test_ids_follow_the_pmc_harvest_then_pmid_then_an_escaped_doi() -> None:
    assert solr_id({"pmcid": "PMC8958025", "pmid": "35350566", "doi": "10.3389/x"}) == "pubmed-8958025"
    assert solr_id({"pmcid": "PMC123", "pmid": None}) == "pubmed-123"  # in PMC, not in PubMed
    assert solr_id({"pmcid": None, "pmid": "35350566", "doi": "10.3389/x"}) == "pubmed-pmid-35350566"
    assert solr_id({"doi": "10.1000/a_b(c)é"}) == "crossref-10.1000_2Fa_5Fb_28c_29_C3_A9"
    with pytest.raises(ValueError, match="no Solr id"):
        solr_id({"pmid": None, "pmcid": None, "doi": None})


@given(st.text(min_size=1).map(lambda suffix: "10.1234/" + suffix))
def test_a_doi_id_is_url_safe_and_gives_the_doi_back(doi: str) -> None:
    escaped = solr_id({"doi": doi}).removeprefix("crossref-")
    assert re.fullmatch(r"[A-Za-z0-9._\-]+", escaped)
    decoded = re.sub(
        r"(?:_[0-9A-F]{2})+",
        lambda m: bytes.fromhex(m.group().replace("_", "")).decode(),
        escaped,
    )
    assert decoded == doi


def test_a_crossref_only_article_is_its_own_collection() -> None:
    solr = solr_document({"doi": "10.1000/xyz", "title": "A title", "language": ["en"]})
    assert solr["id"] == "crossref-10.1000_2Fxyz"
    assert (solr["collection"], solr["institution"], solr["record_format"]) == (
        ["Crossref"],
        ["Crossref"],
        "Crossref",
    )
    assert solr["url"] == ["http://dx.doi.org/10.1000/xyz"]
    assert solr["language"] == ["English"]
    assert solr["title_sort"] == "title"


def test_a_sparse_document_leaves_empty_fields_out() -> None:
    solr = solr_document({"pmid": "42"})
    assert solr == {
        "id": "pubmed-pmid-42",
        "record_format": "MEDLINE/PubMed",
        "collection": ["PubMed"],
        "institution": ["National Center for Biotechnology Information"],
        "format": ["Online", "Article", "Text"],
        "url": ["https://www.ncbi.nlm.nih.gov/pubmed/42"],
    }


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("The Role of Exosomes.", "The Role of Exosomes"),  # PubMed's closing full stop
        ("[Treatment of sepsis in children].", "Treatment of sepsis in children"),  # a translated title
        ("Outcomes in [18F]FDG PET.", "Outcomes in [18F]FDG PET"),
        ("A study by Smith Jr.", "A study by Smith Jr."),
        ("What is p < 0.05?", "What is p < 0.05?"),
        ("Vitamin D:", "Vitamin D"),
    ],
)
def test_titles_are_cleaned_as_vufind_cleans_them(title: str, expected: str) -> None:
    assert solr_document({"pmid": "1", "title": title})["title"] == expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("The Role of X", "role of x"),
        ("An Apple", "apple"),
        ("A B", "b"),
        ("Theory of mind", "theory of mind"),
        ("Anatomy", "anatomy"),
        ("A", "a"),
    ],
)
def test_sort_titles_drop_one_leading_english_article(title: str, expected: str) -> None:
    assert strip_articles(title) == expected


def test_languages_are_named_in_english_whatever_the_code() -> None:
    assert len(LANGUAGE_NAMES) >= 60
    assert [language_name(c) for c in ("eng", "fre", "ger", "chi", "jpn", "en", "fra", "deu", "ES")] == [
        "English",
        "French",
        "German",
        "Chinese",
        "Japanese",
        "English",
        "French",
        "German",
        "Spanish",
    ]
    assert language_name("xyz") == "xyz"
    doc = {"pmid": "1", "language": ["eng", "fre", "en"]}
    assert solr_document(doc)["language"] == ["English", "French"]


def test_authors_persons_and_groups() -> None:
    doc = {
        "pmid": "1",
        "title": "Études",
        "authors": [
            {"collective_name": "The ONCO Study Group", "last_name": None},
            {"last_name": "Doe", "fore_name": None, "initials": "J", "suffix": "Jr"},
            {"last_name": "Müller", "fore_name": "Zoë", "initials": "Z"},
        ],
    }
    solr = solr_document(doc)
    assert solr["author"] == ["Doe, J, Jr", "Müller, Zoë"]
    assert solr["author_corporate"] == ["The ONCO Study Group"]
    assert solr["author_sort"] == "Doe, J, Jr"
    assert solr["work_keys_str_mv"] == [
        "AT doejjr etudes",
        "AT mullerzoe etudes",
        "AT theoncostudygroup etudes",
    ]
    assert work_keys("Title", []) == []


def test_subjects_mesh_and_places_become_topics_and_geographic() -> None:
    doc = {
        "pmid": "1",
        "subjects": ["Oncology", "Neoplasms"],
        "mesh": [
            {"descriptor": "Neoplasms", "type": None},
            {"descriptor": "Humans", "type": None},
            {"descriptor": "France", "type": "Geographic"},
        ],
    }
    solr = solr_document(doc)
    assert solr["topic"] == solr["topic_facet"] == ["Oncology", "Neoplasms", "Humans"]
    assert solr["geographic"] == ["France"]


@pytest.mark.parametrize(
    ("record_type", "crossref_type", "expected"),
    [
        ("journal-article", None, ["Online", "Article", "Text"]),
        ("book-article", None, ["Online", "Book Chapter", "Text"]),
        ("journal-article", "posted-content", ["Online", "Preprint", "Text"]),
        (None, "dataset", ["Online", "Dataset"]),
        (None, "peer-review", ["Online", "Article", "Text"]),
    ],
)
def test_format_follows_the_type(
    record_type: str | None, crossref_type: str | None, expected: list[str]
) -> None:
    doc = {"pmid": "1", "record_type": record_type, "crossref_type": crossref_type}
    assert solr_document(doc)["format"] == expected


def test_the_publication_year_falls_back_to_the_dates() -> None:
    assert solr_document({"pmid": "1", "pub_date": "2021-05"})["publishDate"] == ["2021"]
    assert solr_document({"pmid": "1", "epub_date": "2020-01-02"})["publishDate"] == ["2020"]


def test_a_structured_abstract_is_one_line_of_text() -> None:
    doc = {"pmid": "1", "abstract": "BACKGROUND: Why.\nRESULTS: What."}
    assert solr_document(doc)["description"] == "BACKGROUND: Why. RESULTS: What."


def test_multi_valued_fields_are_lists_and_the_others_are_not() -> None:
    solr = solr_document(enriched_document())
    for key, value in solr.items():
        assert isinstance(value, list) == (key in MULTI_VALUED), key


# ----------------------------------------------------------------------------- against the database


@pytest.fixture(params=database_params())
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with fresh_database_url(request.param, tmp_path) as url:
        engine = open_migrated(url)
        yield engine
        engine.dispose()


def test_the_export_is_one_json_array_one_document_a_line(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db.documents, "CHUNK", 2)
    store_articles(
        engine,
        [make_article(str(p), doi=None, pmcid=None) for p in range(1, 6)]
        + [with_raw(Article(pmid="6", title='Quotes " and\nnewlines, ünïcödé'))],
        url=None,
        fetched_at=FETCHED,
    )
    mark_deleted(engine, ["3"], at=FETCHED)
    out = io.StringIO()
    assert export_solr(engine, out) == 5
    text = out.getvalue()
    lines = text.splitlines()
    assert (lines[0], lines[-1]) == ("[", "]")
    assert all(line.endswith(",") for line in lines[1:-2]) and not lines[-2].endswith(",")
    docs = json.loads(text)
    assert [d["id"] for d in docs] == [f"pubmed-pmid-{p}" for p in (1, 2, 4, 5, 6)]
    assert docs[-1]["title"] == 'Quotes " and\nnewlines, ünïcödé'
    out = io.StringIO()
    assert export_solr(engine, out, include_deleted=True) == 6
    assert len(json.loads(out.getvalue())) == 6


def test_the_catalogue_record_is_reproduced_through_the_pipeline(engine: Engine) -> None:
    """The real PubMed, PMC and Crossref records stored as the pipeline stores them, then exported."""
    data = (FIXTURES / "efetch_pubmed_35350566.xml").read_bytes()
    articles = [r for r in parse_pubmed(data, keep_raw=True) if isinstance(r, Article)]
    store_articles(engine, articles, url=None, fetched_at=FETCHED)
    (pubmed_only,) = load_documents(engine)
    assert "publisher" not in solr_document(pubmed_only)  # PubMed does not name it; PMC will
    assert "topic" not in solr_document(pubmed_only)
    fronts = list(parse_pmc_articles((FIXTURES / "efetch_pmc_PMC8958025.xml").read_bytes(), keep_raw=True))
    store_pmc(engine, fronts, url=None, fetched_at=FETCHED, run_id=None)
    works = parse_crossref_response((FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json").read_bytes())
    store_crossref(engine, works, url=None, fetched_at=FETCHED, run_id=None)
    (doc,) = load_documents(engine)
    solr = solr_document(doc)
    assert {key: solr.get(key) for key in SEED_FIELDS} == SEED_FIELDS
    out = io.StringIO()
    assert export_solr(engine, out) == 1
    assert json.loads(out.getvalue()) == [solr]


def test_an_article_created_from_crossref_alone_gets_a_crossref_id(engine: Engine) -> None:
    works = parse_crossref_response((FIXTURES / "crossref_work_10.3389_fonc.2022.836548.json").read_bytes())
    doi = works[0].doi
    store_crossref(engine, works, url=None, fetched_at=FETCHED, run_id=None, create_missing=[doi])
    (doc,) = load_documents(engine)
    solr = solr_document(doc)
    assert solr["id"] == "crossref-10.3389_2Ffonc.2022.836548"
    assert (solr["collection"], solr["institution"], solr["record_format"]) == (
        ["Crossref"],
        ["Crossref"],
        "Crossref",
    )
    assert solr["url"] == ["http://dx.doi.org/10.3389/fonc.2022.836548"]
    assert solr["title"] == TITLE
    assert solr["author"] == AUTHORS
    assert solr["publisher"] == ["Frontiers Media SA"]  # Crossref's spelling: no PMC record to prefer
    assert solr["topic"] == ["Cancer Research", "Oncology"]


def test_an_empty_export_is_an_empty_array(engine: Engine) -> None:
    out = io.StringIO()
    assert export_solr(engine, out) == 0
    assert json.loads(out.getvalue()) == []
