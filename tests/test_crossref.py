"""The Crossref parser on real recorded answers, and the client against ``responses`` (no network)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
import responses
from hypothesis import given, settings, strategies as st

from enrich.crossref import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_REQUESTS_PER_SECOND,
    MAX_URL,
    CrossrefBatch,
    CrossrefClient,
    advertised_rate,
)
from enrich.crossref_json import (
    canonical_json,
    flatten_markup,
    normalize_update_kind,
    parse_crossref_response,
    parse_crossref_work,
    parse_date_parts,
)
from enrich.records import ContributorName, CrossrefWork, Funder, License, UpdateRelation
from harvester import __version__
from harvester.core.errors import (
    FetchFailedError,
    InvalidIdentifierError,
    ParseError,
    RejectedRequestError,
    ServiceUnavailableError,
)
from harvester.core.records import PartialDate
from harvester.core.settings import DEFAULT_CROSSREF_URL, HttpSettings, Secret, Settings
from harvester.sources.http import WINDOW_MARGIN, RateLimiter, RetryPolicy
from tests.conftest import FIXTURES_DIR, shared_fixture

BASE = "https://api.crossref.org/"
EMAIL = "dev@example.org"
TOKEN = "PLUS-SECRET-1"
FONC = "crossref_work_10.3389_fonc.2022.836548.json"
NOT_FOUND_TEXT = b"Resource not found."  # the body of the recorded 404 (habanero-works-404-notarealdoi.txt)
# Shaped like the recorded 400 and 500 answers (habanero-400-validation-failure.json, rcrossref-500-...).
VALIDATION_FAILURE = (
    b'{"status":"failed","message-type":"validation-failure","message":[{"type":"parameter-not-allowed",'
    b'"value":"query.*","message":"This route does not support field query parameters"}]}'
)
EXCEPTION = (
    b'{"status":"error","message-type":"exception","message-version":"1.0.0","message":{"name":'
    b'"class clojure.lang.ExceptionInfo","description":"clojure.lang.ExceptionInfo: Response Exception",'
    b'"message":"Response Exception","stack":[]}}'
)


MARKUP = re.compile(r"<(/?)[A-Za-z][\w.:-]*(\s[^<>]*)?/?>")


def shared_json(name: str) -> Any:
    return json.loads(shared_fixture(f"crossref/{name}").read_bytes())


def shared_works(name: str) -> dict[str, CrossrefWork]:
    return {w.doi: w for w in parse_crossref_response(shared_fixture(f"crossref/{name}").read_bytes())}


def local_bytes(name: str) -> bytes:
    return (FIXTURES_DIR / name).read_bytes()


# ---- the hand-written fixture from the catalogue record -----------------------------------------------


def test_hand_written_fonc_answer_parses_to_the_catalogue_facts() -> None:
    """Facts from /work/shared/seed/catalogue-record-35350566.txt (title, authors, journal, date, licence,
    language, abstract). The counts, subjects, member id and timestamps are illustrative, not recorded."""
    (work,) = parse_crossref_response(local_bytes(FONC))
    assert work.doi == "10.3389/fonc.2022.836548" and work.work_type == "journal-article"
    assert work.title == "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
    assert work.subtitle is None
    assert (work.container_title, work.short_container_title) == ("Frontiers in Oncology", "Front. Oncol.")
    assert work.publisher == "Frontiers Media SA"
    assert (work.issns, work.issn_print, work.issn_electronic) == (("2234-943X",), None, "2234-943X")
    assert (work.volume, work.issue, work.pages, work.article_number) == ("12", None, None, "836548")
    assert work.issued == work.published_online == PartialDate(2022, 3, 8)
    assert work.issued is not None and work.issued.iso == "2022-03-08" and work.published_print is None
    assert work.language == "en"
    assert [(a.position, a.given, a.family, a.sequence) for a in work.authors] == [
        (1, "Kun", "Liu", "first"),
        (2, "Xin", "Gao", "additional"),
        (3, "Baoqiang", "Kang", "additional"),
        (4, "Yunpeng", "Liu", "additional"),
        (5, "Dingding", "Wang", "additional"),
        (6, "Yi", "Wang", "additional"),
    ]
    assert all(a.affiliations == () and a.orcid is None for a in work.authors)
    assert work.licenses == (
        License(
            url="https://creativecommons.org/licenses/by/4.0/",
            license_type="vor",
            start=PartialDate(2022, 3, 8),
        ),
    )
    assert work.abstract is not None and work.abstract.startswith("Exosomes are lipid membrane bilayer")
    assert (
        work.abstract.endswith("effective diagnostic and treatment strategies.") and "<" not in work.abstract
    )
    assert "Oncology" in work.subjects
    assert work.is_referenced_by_count == 42 and work.references_count == 128  # illustrative values
    assert work.funders == () and work.updates == () and work.relations == () and work.pmid is None


def test_raw_json_is_the_items_own_canonical_json() -> None:
    envelope = json.loads(local_bytes(FONC))
    (work,) = parse_crossref_response(local_bytes(FONC))
    assert work.raw_json is not None and json.loads(work.raw_json) == envelope["message"]
    reordered = dict(reversed(list(envelope["message"].items())))
    again = parse_crossref_work(reordered)
    assert again == work
    assert again.raw_json == work.raw_json  # key order does not matter: sha256 says "unchanged"
    assert hashlib.sha256(again.raw_json or b"").hexdigest() == hashlib.sha256(work.raw_json).hexdigest()
    changed = parse_crossref_work({**reordered, "is-referenced-by-count": 43})
    assert changed.raw_json != work.raw_json
    assert parse_crossref_work(envelope["message"], raw_json=b"as given").raw_json == b"as given"
    assert canonical_json({"b": "é", "a": [1]}) == '{"a":[1],"b":"é"}'.encode()


def thousand_author_work(base: dict[str, Any], count: int = 1000) -> dict[str, Any]:
    work = copy.deepcopy(base)
    work["author"] = [
        {
            "given": f"Given{i}",
            "family": f"Family{i}",
            "sequence": "first" if i == 0 else "additional",
            "affiliation": [{"name": f"Institute {i % 37}"}, {"name": "CERN"}],
            **(
                {"ORCID": "https://orcid.org/0000-0002-1825-0097", "authenticated-orcid": True}
                if i % 10 == 0
                else {}
            ),
        }
        for i in range(count)
    ]
    return work


def test_a_work_with_a_thousand_authors_parses_every_author() -> None:
    # No stored answer has ~1000 authors (the largest has 18): this one is the real-format fonc work with
    # its author list grown to 1000, the size of large physics collaborations. How fast it parses is
    # measured by bench/bench_crossref_parse.py, not here.
    envelope = json.loads(local_bytes(FONC))
    envelope["message"] = thousand_author_work(envelope["message"])
    body = json.dumps(envelope).encode()
    (work,) = parse_crossref_response(body)
    assert len(work.authors) == 1000
    assert work.authors[999] == ContributorName(
        position=1000,
        family="Family999",
        given="Given999",
        affiliations=("Institute 0", "CERN"),
        sequence="additional",
    )
    assert work.authors[990].orcid == "0000-0002-1825-0097"


def test_a_real_work_grown_to_a_thousand_authors_parses() -> None:
    base = shared_json("habanero-works-10.1136_jclinpath-2020-206745.json")["message"]
    work = parse_crossref_work(thousand_author_work(base, 1200))
    assert len(work.authors) == 1200 and work.doi == "10.1136/jclinpath-2020-206745"


# ---- every recorded answer ----------------------------------------------------------------------------

# Recorded answers that are not works, and what parsing them raises.
NOT_WORKS: dict[str, type[Exception]] = {
    "habanero-400-validation-failure.json": RejectedRequestError,
    "habanero-404-cursor-invalid.json": RejectedRequestError,
    "rcrossref-500-exception.json": ServiceUnavailableError,
    "habanero-agency.json": ParseError,  # message-type work-agency
    "habanero-funders-rows2.json": ParseError,  # message-type funder-list
}


def test_every_recorded_crossref_answer_parses_or_is_refused_for_what_it_is() -> None:
    folder = shared_fixture("crossref/habanero-works-10.1371_journal.pone.0033693.json").parent
    files = sorted(folder.glob("*.json"))
    assert len(files) >= 25
    total = 0
    for path in files:
        if path.name in NOT_WORKS:
            with pytest.raises(NOT_WORKS[path.name]):
                parse_crossref_response(path.read_bytes())
            continue
        data = json.loads(path.read_bytes())
        items = (
            data["message"]["items"]
            if data.get("message-type") == "work-list"
            else [data.get("message", data)]
        )
        works = parse_crossref_response(path.read_bytes())
        assert [w.doi for w in works] == [item["DOI"].lower() for item in items], path.name
        for work, item in zip(works, items, strict=True):
            assert work.raw_json is not None and json.loads(work.raw_json) == item
            assert len(work.authors) == len(item.get("author", []))
            assert [a.position for a in work.authors] == list(range(1, len(work.authors) + 1))
            assert all(
                a.orcid is None or re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]", a.orcid)
                for a in work.authors
            )
            assert not any(MARKUP.search(t or "") for t in (work.title, work.abstract, work.container_title))
        total += len(works)
    assert total >= 100


def test_recorded_funders_with_award_ids() -> None:
    (crelle,) = shared_works("rcrossref-works-10.1515_crelle-2013-0024.json").values()
    # Crossref repeats "NSF" once per award; the entries are merged into one funder, awards in order.
    assert crelle.funders == (
        Funder(name="NSF", awards=("DMS-0800084", "DMS-1206661", "DMS-0804042", "DMS-1105187")),
    )
    (ffa,) = shared_works("rcrossref-works-10.1016_j.ffa.2015.10.008.json").values()
    assert ffa.funders == (
        Funder(
            name="National Natural Science Foundation of China",
            doi="10.13039/501100001809",
            awards=("61502048", "61370194", "61411146001"),
        ),
    )
    (aging,) = shared_works("habanero-works-10.1016_j.neurobiolaging.2010.03.024.json").values()
    assert aging.funders == (
        Funder(
            name="Ministry of Education, Science and Technology",
            doi="10.13039/501100004085",
            awards=("R32-10064",),
        ),
        Funder(name="Stem Cell Research Center", awards=("SC4170",)),
    )
    (trial,) = shared_works("rcrossref-works-10.1186_isrctn11093872.json").values()
    assert trial.funders == (
        Funder(name="National Institute for Health Research", doi="10.13039/501100000272"),
    )
    assert trial.work_type == "dataset"


def test_recorded_licences_trial_numbers_orcids_and_counts() -> None:
    (esmo,) = shared_works("habanero-works-10.1136_esmoopen-2020-000776.json").values()
    assert esmo.clinical_trial_numbers == ("nct03797326", "nct04008797")
    assert [(lic.license_type, lic.url) for lic in esmo.licenses] == [
        ("tdm", "https://www.elsevier.com/tdm/userlicense/1.0/"),
        ("tdm", "https://www.elsevier.com/legal/tdmrep-license"),
        ("vor", "http://creativecommons.org/licenses/by-nc/4.0/"),
    ]
    assert esmo.licenses[2].start == PartialDate(2020, 11, 5)
    assert esmo.authors[0].orcid == "0000-0003-3863-9582" and esmo.authors[0].family == "Iwasa"
    assert len(esmo.authors) == 13 and esmo.article_number == "e000776" and esmo.pages == "e000776"
    assert (
        esmo.issued == PartialDate(2020) and esmo.issn_print == "2059-7029" and esmo.issn_electronic is None
    )
    assert (esmo.is_referenced_by_count, esmo.references_count) == (16, 28)
    (clin,) = shared_works("habanero-works-10.1136_jclinpath-2020-206745.json").values()
    orcid_authors = [(a.position, a.family, a.orcid) for a in clin.authors if a.orcid]
    assert orcid_authors == [(14, "Yang", "0000-0002-3513-6501")]
    assert clin.authors[13].affiliations == (
        "School of Laboratory Medicine and Biotechnology, Southern Medical University, Guangzhou, China",
    )
    assert clin.abstract is not None and clin.abstract.startswith("Background\nThe absence of high-quality")
    (crelle,) = shared_works("rcrossref-works-10.1515_crelle-2013-0024.json").values()
    assert crelle.abstract is not None and crelle.abstract.startswith(
        "We investigate rigidity"
    )  # "Abstract" dropped
    assert (crelle.issn_print, crelle.issn_electronic) == ("0075-4102", "1435-5345")
    assert crelle.container_title == "Journal für die reine und angewandte Mathematik (Crelles Journal)"
    assert crelle.subjects == ("Applied Mathematics", "General Mathematics")
    (tcs,) = shared_works("rcrossref-works-10.1016_j.tcs.2015.06.001.json").values()
    assert [(a.family, a.orcid) for a in tcs.authors] == [
        ("Dennunzio", None),
        ("Formenti", "0000-0002-1007-7912"),
        ("Manzoni", None),
    ]


def test_recorded_update_relations_in_both_directions() -> None:
    (pone,) = shared_works("habanero-works-10.1371_journal.pone.0033693.json").values()
    assert pone.updates == (
        UpdateRelation(
            kind="correction",
            doi="10.1371/annotation/c76da2c1-ccb8-4797-94c1-359d3ceceeda",
            direction="updated-by",
            source="publisher",
            date=PartialDate(2012, 5, 8),
            label="Correction",
        ),
    )
    assert (
        pone.retraction_relations == () and pone.is_referenced_by_count == 72 and pone.references_count == 70
    )
    listed = shared_works("habanero-prefix-10.1371-works-query.editor-cooper.json")
    ppat = listed["10.1371/journal.ppat.1006930"]
    assert [(u.kind, u.direction, u.doi, u.date) for u in ppat.updates] == [
        ("new_version", "update-to", "10.1371/journal.ppat.1006930", PartialDate(2018, 3, 26)),
        ("new_version", "updated-by", "10.1371/journal.ppat.1006930", PartialDate(2018, 3, 26)),
    ]
    assert ppat.relations == (("has-review", "10.3410/f.732837943.793543804"),)
    pbio = listed["10.1371/journal.pbio.0050002"]
    assert [(u.kind, u.direction, u.doi) for u in pbio.updates] == [
        ("correction", "updated-by", "10.1371/journal.pbio.0060304")
    ]
    assert pbio.relations == (("correction", "10.1371/journal.pbio.0060304"),)
    assert listed["10.1371/journal.pgen.1011490"].relations == (
        ("has-preprint", "10.1101/2024.07.14.24310389"),
    )
    page = shared_works("rcrossref-journals-1932-6203-works-cursor-page0.json")
    notices = {doi: w.updates for doi, w in page.items() if w.updates}
    assert len(notices) == 8
    assert all(
        u.kind == "correction" and u.direction == "update-to" and u.source is None
        for ups in notices.values()
        for u in ups
    )
    assert notices["10.1371/journal.pone.0129989"][0].doi == "10.1371/journal.pone.0120799"


def test_recorded_csl_json_and_books() -> None:
    (csl,) = shared_works("habanero-cn-citeproc-10.1126_science.169.3946.635.json").values()
    assert (csl.title, csl.container_title, csl.short_container_title) == (
        "The Structure of Ordinary Water",
        "Science",
        "Science",
    )
    assert (
        csl.subtitle
        == "New data and interpretations are yielding new insights into this fascinating substance."
    )
    assert csl.published_print == PartialDate(1970, 8, 14) and csl.issns == ("0036-8075", "1095-9203")
    assert (csl.volume, csl.issue, csl.pages, csl.references_count) == ("169", "3946", "635-641", 76)
    widgets = shared_works("habanero-works-query-widget-cursor-star.json")
    assert widgets["10.1007/978-1-4302-0197-7_9"].isbns == ("9781590598160",)
    assert widgets["10.1007/978-1-4302-0197-7_9"].work_type == "book-chapter"
    fatcat = shared_works("fatcat-crossref_api_works.json")
    assert fatcat["10.1007/s10107-009-0306-5"].relations == ()  # "cites": [] holds nothing


def test_recorded_error_answers() -> None:
    with pytest.raises(RejectedRequestError, match="This route does not support field query parameters"):
        parse_crossref_response(shared_fixture("crossref/habanero-400-validation-failure.json").read_bytes())
    with pytest.raises(ServiceUnavailableError, match="Response Exception"):
        parse_crossref_response(shared_fixture("crossref/rcrossref-500-exception.json").read_bytes())
    with pytest.raises(ParseError, match="not JSON"):
        parse_crossref_response(shared_fixture("crossref/habanero-works-404-notarealdoi.txt").read_bytes())
    with pytest.raises(ParseError, match="not JSON"):
        parse_crossref_response(shared_fixture("crossref/habanero-cn-citeproc.0-301.html").read_bytes())


# ---- parsing rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"date-parts": [[2020, 3, 8]]}, PartialDate(2020, 3, 8)),
        ({"date-parts": [[2020, 3]]}, PartialDate(2020, 3)),
        ({"date-parts": [[2020]]}, PartialDate(2020)),
        ({"date-parts": [["2020", "03"]]}, PartialDate(2020, 3)),
        ({"date-parts": [[None]]}, None),
        ({"date-parts": [[]]}, None),
        ({"date-parts": []}, None),
        ({"date-time": "2020-03-08T00:00:00Z"}, None),
        (None, None),
        ({"date-parts": [[2020, 13, 1]]}, PartialDate(2020, raw="2020-13-1")),
        ({"date-parts": [[2021, 2, 29]]}, PartialDate(2021, 2, raw="2021-2-29")),
        ({"date-parts": [[2020, 2, 29]]}, PartialDate(2020, 2, 29)),
    ],
)
def test_date_parts(value: Any, expected: PartialDate | None) -> None:
    assert parse_date_parts(value) == expected


def test_markup_is_flattened() -> None:
    assert (
        flatten_markup("CO<sub>2</sub> in <i>E.&#160;coli</i> &amp; <scp>dna</scp>")
        == "CO2 in E. coli & dna"  # a no-break space collapses like any other
    )
    abstract = (
        "<jats:title>Abstract</jats:title><jats:sec><jats:title>Background</jats:title>"
        "<jats:p>One  <jats:italic>two</jats:italic>\n three.</jats:p></jats:sec>"
        "<jats:sec><jats:title>Results</jats:title><jats:p>p &lt; 0.05</jats:p></jats:sec>"
    )
    assert flatten_markup(abstract, blocks=True) == "Background\nOne two three.\nResults\np < 0.05"
    assert flatten_markup("<jats:p> </jats:p>", blocks=True) is None
    assert flatten_markup("IL-6 <10 pg/ml and a<b") == "IL-6 <10 pg/ml and a<b"
    assert flatten_markup("p < a and b > c") == "p < a and b > c"
    work = parse_crossref_work(
        {"DOI": "10.1/X", "title": ["<i>Alpha</i>\n  <b>beta</b>"], "subtitle": [], "container-title": []}
    )
    assert (work.doi, work.title, work.subtitle, work.container_title) == ("10.1/x", "Alpha beta", None, None)


def test_update_kinds_have_one_spelling() -> None:
    assert normalize_update_kind("new_version") == normalize_update_kind("new-version") == "new_version"
    assert normalize_update_kind("Expression of Concern") == "expression_of_concern"
    work = parse_crossref_work(
        {
            "DOI": "10.1/a",
            "updated-by": [
                {"DOI": "10.1/B", "type": "new-version", "source": "publisher"},
                {"DOI": "10.1/c", "type": "retraction", "source": "retraction-watch", "label": "Retraction",
                 "updated": {"date-parts": [[2024, 1, 2]]}},
            ],
            "update-to": [{"type": "correction"}],
        }
    )  # fmt: skip
    assert work.updates == (
        UpdateRelation(kind="correction", doi=None, direction="update-to"),
        UpdateRelation(kind="new_version", doi="10.1/b", direction="updated-by", source="publisher"),
        UpdateRelation(
            kind="retraction",
            doi="10.1/c",
            direction="updated-by",
            source="retraction-watch",
            date=PartialDate(2024, 1, 2),
            label="Retraction",
        ),
    )
    assert [u.doi for u in work.retraction_relations] == ["10.1/c"]


@given(st.text(max_size=30))
def test_update_kind_normalisation_is_idempotent(kind: str) -> None:
    once = normalize_update_kind(kind)
    assert normalize_update_kind(once) == once and "-" not in once


def test_rarer_fields_pmid_names_relations_and_references() -> None:
    work = parse_crossref_work(
        {
            "DOI": "10.1/a",
            "PMID": "0035350566",
            "reference-count": 5,
            "author": [
                {"name": "The ATLAS Collaboration", "sequence": "first", "affiliation": [{"name": " CERN "}]},
                {"given": "Jo", "family": "Doe", "suffix": "Jr.", "ORCID": "http://orcid.org/0000-0002-1825-0098"},
                "not an author",
            ],
            "relation": {
                "is-preprint-of": {"id": "10.1/B", "id-type": "doi", "asserted-by": "subject"},
                "has-review": [{"id": "https://example.org/r", "id-type": "uri"}, {"id-type": "doi"}],
            },
            "funder": [
                {"name": "Someone", "award": ["A1", "A1", " ", "A2"], "award-info": [{"award-number": "A3"}]}
            ],
            "ISBN": ["978-0-00-000000-2", "978-0-00-000000-2"],
            "issn-type": [{"value": "1234-5678", "type": "print"}],
        }
    )  # fmt: skip
    assert work.pmid == "35350566" and work.references_count == 5
    assert work.authors[0] == ContributorName(
        position=1, name="The ATLAS Collaboration", affiliations=("CERN",), sequence="first"
    )
    assert (work.authors[1].suffix, work.authors[1].orcid) == ("Jr.", None)  # bad check digit: dropped
    assert len(work.authors) == 2
    assert work.relations == (("is-preprint-of", "10.1/b"), ("has-review", "https://example.org/r"))
    assert work.funders == (Funder(name="Someone", awards=("A1", "A2", "A3")),)
    assert work.isbns == ("978-0-00-000000-2",)
    assert (work.issns, work.issn_print) == (("1234-5678",), "1234-5678")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", ParseError),
        (b"<html><title>Bad Gateway</title></html>", ParseError),
        (b"[1, 2]", ParseError),
        (b'{"hello": "world"}', ParseError),
        (b'{"status": "ok", "message-type": "member", "message": {}}', ParseError),
        (b'{"status": "ok", "message-type": "work", "message": []}', ParseError),
        (b'{"status": "ok", "message-type": "work-list", "message": {}}', ParseError),
        (b'{"status": "ok", "message-type": "work", "message": {"title": ["no DOI"]}}', ParseError),
        (b'{"status": "maybe", "message-type": "work"}', ParseError),
        (VALIDATION_FAILURE, RejectedRequestError),
        (EXCEPTION, ServiceUnavailableError),
    ],
)
def test_what_is_not_a_crossref_work(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_crossref_response(body)


def test_bom_and_bare_work_objects() -> None:
    works = parse_crossref_response(b'\xef\xbb\xbf{"DOI": "10.1/A", "title": "CSL title"}')
    assert [(w.doi, w.title) for w in works] == [("10.1/a", "CSL title")]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = [
    "type", "title", "subtitle", "container-title", "short-container-title", "publisher", "ISSN", "issn-type",
    "ISBN", "volume", "issue", "page", "article-number", "issued", "published-print", "published-online",
    "language", "abstract", "author", "license", "funder", "subject", "is-referenced-by-count",
    "references-count", "update-to", "updated-by", "relation", "clinical-trial-number", "PMID",
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8))
def test_odd_values_in_any_field_never_break_the_parser(fields: dict[str, Any]) -> None:
    work = parse_crossref_work({"DOI": "10.1000/xyz", **fields})
    assert work.doi == "10.1000/xyz" and isinstance(work.authors, tuple)
    for date in (work.issued, work.published_print, work.published_online):
        assert date is None or (date.year is not None and (date.month is None or 1 <= date.month <= 12))


# ---- rate headers and the limiter ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "rate"),
    [
        ({"x-rate-limit-limit": "50", "x-rate-limit-interval": "1s"}, 50.0),
        ({"X-Rate-Limit-Limit": "5", "X-Rate-Limit-Interval": "1s"}, 5.0),
        ({"x-rate-limit-limit": "30", "x-rate-limit-interval": "60s"}, 0.5),
        ({"x-rate-limit-limit": "2", "x-rate-limit-interval": "500ms"}, 4.0),
        ({"x-rate-limit-limit": "10"}, 10.0),
        ({"x-rate-limit-limit": "ten", "x-rate-limit-interval": "1s"}, None),
        ({"x-rate-limit-limit": "0", "x-rate-limit-interval": "1s"}, None),
        ({"x-rate-limit-limit": "5", "x-rate-limit-interval": "soon"}, None),
        ({}, None),
    ],
)
def test_advertised_rate(headers: dict[str, str], rate: float | None) -> None:
    assert advertised_rate(headers) == rate


def test_limiter_limit_to_lowers_and_restores_but_never_passes_its_ceiling() -> None:
    limiter = RateLimiter(3.0)
    assert limiter.limit_to(1.5) == 1.5 == limiter.rate
    assert limiter.limit_to(50.0) == 3.0 == limiter.rate == limiter.ceiling
    assert limiter.limit_to(0.5) == 0.5
    assert limiter.limit_to(None) == 3.0
    with pytest.raises(ValueError):
        limiter.limit_to(0.0)


def test_a_lowered_limiter_paces_at_the_new_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3.0, clock=clock.clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.limit_to(1.0)
    limiter.acquire()
    limiter.acquire()
    assert clock.now == pytest.approx(2 * (1.0 + WINDOW_MARGIN))  # one a second, window margin included


# ---- the client ---------------------------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeCrossref:
    """Answers /works/{doi} and /works?filter=doi:... from ``works`` like Crossref; ``script`` overrides."""

    works: dict[str, dict[str, Any]] = field(default_factory=dict)
    rate_headers: dict[str, str] = field(
        default_factory=lambda: {"x-rate-limit-limit": "50", "x-rate-limit-interval": "1s"}
    )
    script: list[tuple[Callable[[requests.PreparedRequest], bool], Reply]] = field(default_factory=list)
    always: list[tuple[Callable[[requests.PreparedRequest], bool], Reply]] = field(default_factory=list)
    hide_from_list: set[str] = field(default_factory=set)
    seen: list[requests.PreparedRequest] = field(default_factory=list)

    def add(self, *works: dict[str, Any]) -> None:
        for work in works:
            self.works[work["DOI"].lower()] = work

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        self.seen.append(request)
        for position, (matches, reply) in enumerate(self.script):
            if matches(request):
                del self.script[position]
                return reply.status, {**self.rate_headers, **reply.headers}, reply.body
        for matches, reply in self.always:
            if matches(request):
                return reply.status, {**self.rate_headers, **reply.headers}, reply.body
        path = urlsplit(request.url or "").path
        headers = {**self.rate_headers, "Content-Type": "application/json"}
        if path == "/works":
            query = parse_qs(urlsplit(request.url or "").query)
            wanted = [c.partition(":")[2].lower() for c in query["filter"][0].split(",")]
            items = [self.works[d] for d in wanted if d in self.works and d not in self.hide_from_list]
            message = {"facets": {}, "total-results": len(items), "items": items, "items-per-page": 20}
            return 200, headers, envelope("work-list", message)
        doi = unquote(path[len("/works/") :]).lower()
        if doi not in self.works:
            return 404, {**self.rate_headers, "Content-Type": "text/plain"}, NOT_FOUND_TEXT
        return 200, headers, envelope("work", self.works[doi])

    def lists(self) -> list[list[str]]:
        """The DOIs of each list request, in order."""
        found = []
        for request in self.seen:
            parts = urlsplit(request.url or "")
            if parts.path == "/works":
                found.append([c.partition(":")[2] for c in parse_qs(parts.query)["filter"][0].split(",")])
        return found

    def singles(self) -> list[str]:
        """The raw paths of each /works/{doi} request, in order."""
        return [urlsplit(r.url or "").path for r in self.seen if urlsplit(r.url or "").path != "/works"]


def envelope(message_type: str, message: Any) -> bytes:
    return json.dumps(
        {"status": "ok", "message-type": message_type, "message-version": "1.0.0", "message": message}
    ).encode()


def work(doi: str, title: str = "A title") -> dict[str, Any]:
    return {"DOI": doi, "type": "journal-article", "title": [title]}


def is_list(request: requests.PreparedRequest) -> bool:
    return urlsplit(request.url or "").path == "/works"


def is_single(request: requests.PreparedRequest) -> bool:
    return not is_list(request)


@dataclass
class Harness:
    fake: FakeCrossref
    client: CrossrefClient
    limiter: RateLimiter
    waits: list[float]
    clock: FakeClock


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def make_settings(*, email: str | None = EMAIL, token: str | None = None, max_attempts: int = 3) -> Settings:
    return Settings(
        database_url="sqlite:///unused.sqlite",
        email=email,
        crossref_plus_token=Secret(token) if token else None,
        http=HttpSettings(max_attempts=max_attempts, backoff_initial=1.0, backoff_max=60.0),
    )


@pytest.fixture
def make(mock: responses.RequestsMock) -> Callable[..., Harness]:
    def build(*, email: str | None = EMAIL, token: str | None = None, max_attempts: int = 3) -> Harness:
        fake = FakeCrossref()
        mock.add_callback(responses.GET, re.compile(re.escape(BASE) + "works.*"), callback=fake)
        settings = make_settings(email=email, token=token, max_attempts=max_attempts)
        clock = FakeClock()
        limiter = RateLimiter(DEFAULT_REQUESTS_PER_SECOND, clock=clock.clock, sleep=clock.sleep)
        waits: list[float] = []
        policy = RetryPolicy(settings.http, sleep=waits.append)
        client = CrossrefClient.from_settings(settings, requests.Session(), limiter=limiter, policy=policy)
        return Harness(fake, client, limiter, waits, clock)

    return build


def dois(count: int, prefix: str = "10.5555/item.") -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(count)]


def batches_and_failures(
    items: list[CrossrefBatch | FetchFailedError],
) -> tuple[list[CrossrefBatch], list[FetchFailedError]]:
    return [i for i in items if isinstance(i, CrossrefBatch)], [
        i for i in items if isinstance(i, FetchFailedError)
    ]


def test_defaults_https_polite_pool_and_its_rate_since_december_2025() -> None:
    assert DEFAULT_CROSSREF_URL.startswith("https://") and DEFAULT_BATCH_SIZE == 50
    # Polite pool: 10 requests a second, at most 3 at a time (PEERS.md, "Crossref since 1 December 2025").
    assert DEFAULT_REQUESTS_PER_SECOND <= 10.0
    client = CrossrefClient.from_settings(make_settings(), requests.Session())
    assert client.service.base_url == "https://api.crossref.org/" and client.batch_size == 50
    with pytest.raises(ValueError):
        CrossrefClient(client.service, batch_size=0)


def test_mailto_and_user_agent_on_every_request_and_no_plus_header_without_a_token(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.fake.add(work("10.5555/a"))
    assert [
        b.works[0].doi
        for b in list(h.client.fetch_works(["10.5555/a", "10.5555/missing"]))
        if isinstance(b, CrossrefBatch)
    ] == ["10.5555/a"]
    assert h.client.fetch_work("10.5555/a") is not None
    assert len(h.fake.seen) == 3
    for request in h.fake.seen:
        assert parse_qs(urlsplit(request.url or "").query)["mailto"] == [EMAIL]
        agent = request.headers["User-Agent"]
        assert agent.startswith(f"pubmed-harvester/{__version__} (") and f"mailto:{EMAIL}" in agent
        assert request.headers["Accept"] == "application/json"
        assert "Crossref-Plus-API-Token" not in request.headers


def test_without_an_email_there_is_no_mailto(make: Callable[..., Harness]) -> None:
    h = make(email=None)
    h.fake.add(work("10.5555/a"))
    assert h.client.fetch_work("10.5555/a") is not None
    assert "mailto" not in (h.fake.seen[0].url or "")


def test_plus_token_is_sent_in_its_header_and_never_logged_or_shown(
    make: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = make(token=TOKEN)
    h.fake.add(work("10.5555/a"))
    echo = Reply(
        400,
        VALIDATION_FAILURE.replace(b"query.*", f"token {TOKEN}".encode()),
        {"Content-Type": "application/json"},
    )
    h.fake.always.append((lambda r: "10.5555%2Fbad" in (r.url or ""), echo))
    h.fake.always.append(
        (lambda r: "10.5555%2Fdown" in (r.url or ""), Reply(500, EXCEPTION + TOKEN.encode()))
    )
    batch = next(iter(h.client.fetch_works(["10.5555/a"])))
    assert isinstance(batch, CrossrefBatch) and TOKEN not in batch.response.url
    with pytest.raises(RejectedRequestError) as rejected:
        h.client.fetch_work("10.5555/bad")
    with pytest.raises(FetchFailedError) as failed:
        h.client.fetch_work("10.5555/down")
    assert all(r.headers["Crossref-Plus-API-Token"] == f"Bearer {TOKEN}" for r in h.fake.seen)
    for error in (rejected.value, failed.value, failed.value.__cause__):
        assert (
            error is not None and TOKEN not in str(error) and TOKEN not in (getattr(error, "url", "") or "")
        )
    assert "***" in str(rejected.value)
    assert caplog.records and TOKEN not in caplog.text


def test_120_dois_go_out_as_three_list_requests_of_50_50_and_20(make: Callable[..., Harness]) -> None:
    h = make()
    wanted = dois(120)
    h.fake.add(*(work(d) for d in wanted))
    items = list(h.client.fetch_works(wanted))
    batches, failures = batches_and_failures(items)
    assert failures == [] and [len(b.requested) for b in batches] == [50, 50, 20]
    assert [len(d) for d in h.fake.lists()] == [50, 50, 20] and h.fake.singles() == []
    assert [w.doi for b in batches for w in b.works] == wanted
    assert all(b.not_found == () and b.aliases == () for b in batches)
    first = h.fake.seen[0]
    query = parse_qs(urlsplit(first.url or "").query)
    assert query["rows"] == ["50"] and query["filter"][0] == ",".join(f"doi:{d}" for d in wanted[:50])
    assert "doi%3A10.5555%2Fitem.0000%2Cdoi%3A" in (first.url or "")  # URL-encoded
    assert batches[0].response.status == 200 and "/works?" in batches[0].response.url


def test_long_dois_make_smaller_batches_to_keep_the_url_short(make: Callable[..., Harness]) -> None:
    h = make()
    wanted = dois(30, prefix="10.5555/" + "x" * 180 + ".")
    h.fake.add(*(work(d) for d in wanted))
    batches, _ = batches_and_failures(list(h.client.fetch_works(wanted)))
    assert len(batches) > 1 and sum(len(b.requested) for b in batches) == 30
    assert all(len(r.url or "") <= MAX_URL for r in h.fake.seen)


def test_dois_missing_from_the_list_are_looked_up_one_by_one_and_404_is_not_found(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.fake.add(work("10.5555/a"), work("10.5555/b"), work("10.5555/c"))
    h.fake.hide_from_list = {"10.5555/c"}
    (batch,) = list(h.client.fetch_works(["10.5555/a", "10.5555/b", "10.5555/c", "10.5555/nope"]))
    assert isinstance(batch, CrossrefBatch)
    assert [w.doi for w in batch.works] == ["10.5555/a", "10.5555/b", "10.5555/c"]
    assert batch.not_found == ("10.5555/nope",)
    assert batch.requested == ("10.5555/a", "10.5555/b", "10.5555/c", "10.5555/nope")
    assert h.fake.singles() == ["/works/10.5555%2Fc", "/works/10.5555%2Fnope"]
    assert h.waits == []  # a 404 is an answer, not a failure: no retry


def test_a_doi_in_another_case_merges_with_its_request(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.add(work("10.1002/ANIE.201915678"), work("10.5555/x"))
    (batch,) = list(h.client.fetch_works(["10.1002/anie.201915678", "doi:10.5555/X", "10.5555/x"]))
    assert isinstance(batch, CrossrefBatch)
    assert batch.requested == ("10.1002/anie.201915678", "doi:10.5555/X", "10.5555/x")
    assert [w.doi for w in batch.works] == ["10.1002/anie.201915678", "10.5555/x"]
    assert h.fake.lists() == [["10.1002/anie.201915678", "10.5555/x"]]  # each DOI sent once
    assert batch.not_found == () and h.fake.singles() == []


def test_an_aliased_doi_answered_with_its_primary_is_reported(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.add(work("10.5555/primary"))
    h.fake.always.append(
        (
            lambda r: "alias" in (r.url or "") and is_single(r),
            Reply(200, envelope("work", work("10.5555/primary"))),
        )
    )
    (batch,) = list(h.client.fetch_works(["10.5555/Alias"]))
    assert isinstance(batch, CrossrefBatch)
    assert [w.doi for w in batch.works] == ["10.5555/primary"]
    assert batch.aliases == (("10.5555/Alias", "10.5555/primary"),) and batch.not_found == ()


def test_429_with_rate_headers_is_retried_after_retry_after_and_slows_the_limiter(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.fake.add(work("10.5555/a"))
    limited = Reply(
        429,
        b"<html><body><h1>429 Too Many Requests</h1>\n"
        b"You have sent too many requests in a given amount of time.\n</body></html>",
        {
            "Content-Type": "text/html",
            "Retry-After": "2",
            "x-rate-limit-limit": "1",
            "x-rate-limit-interval": "1s",
        },
    )
    h.fake.script.append((is_list, limited))
    h.fake.rate_headers = {"x-rate-limit-limit": "1", "x-rate-limit-interval": "1s"}
    (batch,) = list(h.client.fetch_works(["10.5555/a"]))
    assert isinstance(batch, CrossrefBatch) and [w.doi for w in batch.works] == ["10.5555/a"]
    assert h.waits == [2.0] and len(h.fake.seen) == 2
    assert h.limiter.rate == 1.0


def test_rate_headers_lower_the_rate_and_never_raise_it_past_the_ceiling(
    make: Callable[..., Harness],
) -> None:
    h = make()
    h.fake.add(work("10.5555/a"))
    h.fake.rate_headers = {"x-rate-limit-limit": "2", "x-rate-limit-interval": "1s"}
    assert h.client.fetch_work("10.5555/a") is not None
    assert h.limiter.rate == 2.0
    h.fake.rate_headers = {"x-rate-limit-limit": "50", "x-rate-limit-interval": "1s"}
    assert h.client.fetch_work("10.5555/a") is not None
    assert h.limiter.rate == DEFAULT_REQUESTS_PER_SECOND == h.limiter.ceiling
    h.fake.rate_headers = {}
    assert h.client.fetch_work("10.5555/a") is not None and h.limiter.rate == DEFAULT_REQUESTS_PER_SECOND


def test_requests_are_paced_by_the_limiter(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.add(work("10.5555/a"))
    for _ in range(21):
        h.client.fetch_work("10.5555/a")
    assert h.clock.now >= 2.0  # 21 requests at 10 a second


def test_a_batch_that_never_succeeds_is_a_fetch_failure_naming_its_dois(make: Callable[..., Harness]) -> None:
    h = make(max_attempts=3)
    wanted = dois(120)
    h.fake.add(*(work(d) for d in wanted))
    second = f"doi:{wanted[50]},"
    h.fake.always.append((lambda r: is_list(r) and second in unquote(r.url or ""), Reply(500, EXCEPTION)))
    items = list(h.client.fetch_works(wanted))
    assert [type(i).__name__ for i in items] == ["CrossrefBatch", "FetchFailedError", "CrossrefBatch"]
    failure = items[1]
    assert isinstance(failure, FetchFailedError)
    assert failure.ids == tuple(wanted[50:100]) and failure.source == "crossref"
    assert "Response Exception" in str(failure) and failure.url is not None and "/works?" in failure.url
    assert len(h.waits) == 2  # three attempts
    assert [len(i.requested) for i in items if isinstance(i, CrossrefBatch)] == [50, 20]


def test_the_recorded_500_exception_is_retried_then_a_fetch_failure(make: Callable[..., Harness]) -> None:
    recorded = shared_fixture("crossref/rcrossref-500-exception.json").read_bytes()
    h = make(max_attempts=4)
    h.fake.always.append((is_list, Reply(500, recorded, {"Content-Type": "application/json"})))
    (failure,) = list(h.client.fetch_works(["10.5555/a", "10.5555/b"]))
    assert isinstance(failure, FetchFailedError) and failure.ids == ("10.5555/a", "10.5555/b")
    assert "Response Exception" in str(failure) and len(h.fake.seen) == 4


def test_the_recorded_400_is_a_rejected_request_with_crossrefs_words(make: Callable[..., Harness]) -> None:
    recorded = shared_fixture("crossref/habanero-400-validation-failure.json").read_bytes()
    h = make()
    h.fake.always.append((is_list, Reply(400, recorded, {"Content-Type": "application/json;charset=utf-8"})))
    with pytest.raises(RejectedRequestError, match="This route does not support field query parameters"):
        list(h.client.fetch_works(["10.5555/a"]))
    assert len(h.fake.seen) == 1


def test_a_400_is_rejected_not_retried(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.always.append((is_single, Reply(400, VALIDATION_FAILURE, {"Content-Type": "application/json"})))
    with pytest.raises(
        RejectedRequestError, match=re.escape("parameter-not-allowed query.*: This route does not support")
    ) as info:
        h.client.fetch_work("10.5555/a")
    assert info.value.url is not None and "/works/10.5555%2Fa" in info.value.url and h.waits == []


def test_the_recorded_404_text_is_not_found(make: Callable[..., Harness]) -> None:
    recorded = shared_fixture("crossref/habanero-works-404-notarealdoi.txt").read_bytes()
    h = make()
    h.fake.always.append((is_single, Reply(404, recorded, {"Content-Type": "text/plain"})))
    assert h.client.fetch_work("10.1371/notarealdoi") is None
    (batch,) = list(h.client.fetch_works(["10.1371/notarealdoi"]))
    assert isinstance(batch, CrossrefBatch) and batch.not_found == ("10.1371/notarealdoi",)
    assert batch.works == () and batch.requested == ("10.1371/notarealdoi",)


def test_a_404_page_from_elsewhere_is_not_taken_for_not_found(make: Callable[..., Harness]) -> None:
    h = make()
    page = b"<html><head><title>404 Not Found</title></head><body>nginx</body></html>"
    h.fake.always.append((is_single, Reply(404, page, {"Content-Type": "text/html"})))
    with pytest.raises(RejectedRequestError, match="crossref_url"):
        h.client.fetch_work("10.5555/a")


def test_fetch_work_returns_the_work_and_fails_with_its_doi(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.add(json.loads(local_bytes(FONC))["message"])
    found = h.client.fetch_work("https://doi.org/10.3389/FONC.2022.836548")
    assert (
        found is not None
        and found.title == "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
    )
    assert h.fake.singles() == ["/works/10.3389%2Ffonc.2022.836548"]
    h.fake.always.append((is_single, Reply(503, b"Service Unavailable")))
    with pytest.raises(FetchFailedError) as info:
        h.client.fetch_work("10.3389/FONC.2022.836548")
    assert info.value.ids == ("10.3389/FONC.2022.836548",)


def test_an_html_page_inside_a_200_is_retried(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.add(work("10.5555/a"))
    h.fake.script.append(
        (is_list, Reply(200, b"<html><title>Maintenance</title></html>", {"Content-Type": "text/html"}))
    )
    h.fake.script.append((is_list, Reply(200, envelope("work-list", {"items": [work("10.5555/a")]})[:40])))
    (batch,) = list(h.client.fetch_works(["10.5555/a"]))
    assert isinstance(batch, CrossrefBatch) and len(batch.works) == 1 and len(h.waits) == 2


def test_single_lookups_that_fail_come_after_their_batch(make: Callable[..., Harness]) -> None:
    h = make(max_attempts=2)
    h.fake.add(work("10.5555/a"), work("10.5555/b"))
    h.fake.hide_from_list = {"10.5555/b"}
    h.fake.always.append(
        (lambda r: is_single(r) and "10.5555%2Fb" in (r.url or ""), Reply(502, b"Bad Gateway"))
    )
    items = list(h.client.fetch_works(["10.5555/a", "10.5555/B"]))
    batch, failure = items
    assert isinstance(batch, CrossrefBatch) and isinstance(failure, FetchFailedError)
    assert batch.requested == ("10.5555/a",) and [w.doi for w in batch.works] == ["10.5555/a"]
    assert failure.ids == ("10.5555/B",) and "one by one" in str(failure)


def test_a_doi_with_a_comma_is_looked_up_alone(make: Callable[..., Harness]) -> None:
    h = make()
    h.fake.add(work("10.5555/a"), work("10.5555/x,y"))
    items = list(h.client.fetch_works(["10.5555/x,y", "10.5555/a"]))
    batches, failures = batches_and_failures(items)
    assert failures == [] and [[w.doi for w in b.works] for b in batches] == [["10.5555/a"], ["10.5555/x,y"]]
    assert h.fake.lists() == [["10.5555/a"]] and h.fake.singles() == ["/works/10.5555%2Fx%2Cy"]


def test_malformed_dois_are_refused_before_any_request(make: Callable[..., Harness]) -> None:
    h = make()
    with pytest.raises(InvalidIdentifierError):
        list(h.client.fetch_works(["10.5555/a", "not-a-doi"]))
    with pytest.raises(InvalidIdentifierError):
        h.client.fetch_work("pmid:123")
    assert h.fake.seen == [] and list(h.client.fetch_works([])) == []


def test_the_client_against_the_stand_in_over_real_http() -> None:
    from tests.standin import CROSSREF_WORKS, StandIn, crossref_rate_limited

    with StandIn(crossref_sources=[local_bytes(FONC)], crossref_rate_limit=2) as server:
        settings = Settings(
            database_url="sqlite:///unused.sqlite", email=EMAIL, crossref_url=server.crossref_url
        )
        waits: list[float] = []
        clock = FakeClock()
        limiter = RateLimiter(DEFAULT_REQUESTS_PER_SECOND, clock=clock.clock, sleep=clock.sleep)
        policy = RetryPolicy(HttpSettings(max_attempts=3), sleep=waits.append)
        client = CrossrefClient.from_settings(settings, requests.Session(), limiter=limiter, policy=policy)
        server.inject(CROSSREF_WORKS, crossref_rate_limited(limit=1, retry_after=1))
        items = list(client.fetch_works(["10.3389/FONC.2022.836548", "10.1371/notarealdoi"]))
        (batch,) = items
        assert isinstance(batch, CrossrefBatch) and batch.not_found == ("10.1371/notarealdoi",)
        assert [w.doi for w in batch.works] == ["10.3389/fonc.2022.836548"]
        assert waits == [1.0]  # the 429's Retry-After
        log = server.requests_for(CROSSREF_WORKS)
        assert [r.status for r in log] == [429, 200, 404]
        assert all(r.params.get("mailto") == EMAIL for r in log)
        assert log[2].path == "/crossref/works/10.1371%2Fnotarealdoi"
        assert client.fetch_work("10.3389/fonc.2022.836548") == batch.works[0]
        assert limiter.rate == 2.0 and server.errors == []


def test_one_work_of_a_list_that_does_not_parse_fails_alone_without_a_retry(
    make: Callable[..., Harness],
) -> None:
    # Issue 13: a work nested past the bound (or otherwise unparsable) costs only its own DOI.
    h = make()
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    h.fake.add(work("10.5555/a"), {**work("10.5555/b"), "extra": deep}, work("10.5555/c"))
    items = list(h.client.fetch_works(["10.5555/a", "10.5555/b", "10.5555/c"]))
    batch, failure = items
    assert isinstance(batch, CrossrefBatch) and isinstance(failure, FetchFailedError)
    assert [w.doi for w in batch.works] == ["10.5555/a", "10.5555/c"]
    assert failure.ids == ("10.5555/b",) and "nested deeper than 64 levels" in str(failure)
    assert h.fake.singles() == [] and h.waits == []  # not asked again, not retried
