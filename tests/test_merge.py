"""enrich.merge: views of the three sources, the precedence policy, disagreements, retraction; properties."""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

import enrich.merge
from enrich.merge import (
    DEFAULT_POLICY,
    FIELDS,
    SHARED_FIELDS,
    SOURCES,
    Disagreement,
    Provenance,
    SourceView,
    expand_pages,
    initials,
    merge,
    policy_from_config,
    view_of_crossref,
    view_of_pmc,
    view_of_pubmed,
)
from enrich.records import ContributorName
from harvester.core.errors import ConfigError
from harvester.core.ids import normalize_doi
from tests.db_helpers import SEED_DOI, SEED_PMCID, SEED_PMID, crossref_work, pmc_front, pubmed_record

T0 = datetime(2024, 5, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
T2 = T0 + timedelta(days=2)


def seed_views() -> list[SourceView]:
    funder = [{"name": "National Natural Science Foundation of China", "DOI": "10.13039/501100001809"}]
    return [
        view_of_pubmed(pubmed_record(), T0),
        view_of_pmc(pmc_front(), T1),
        view_of_crossref(crossref_work(funder=funder), T2),
    ]


def view(source: str, source_id: str = "x", at: datetime = T0, /, **values: Any) -> SourceView:
    return SourceView(source, source_id, at, values)


# ---------------------------------------------------------------------------------------------- seed


def test_the_seed_merges_each_field_from_the_source_the_policy_names() -> None:
    merged = merge(seed_views())
    sources = {name: p.source for name, p in merged.provenance.items()}
    for name in (
        "title",
        "abstract",
        "authors",
        "journal_title",
        "issn",
        "volume",
        "pub_date",
        "doi",
        "pmcid",
    ):
        assert sources[name] == "pubmed", name
    for name in ("publisher", "license", "licenses", "copyright", "copyright_year", "subjects"):
        assert sources[name] == "pmc", name
    for name in ("citation_count", "references_count", "crossref_type", "funders"):
        assert sources[name] == "crossref", name
    assert merged.values["publisher"] == "Frontiers Media S.A."  # PMC's spelling, not Crossref's "SA"
    assert merged.values["license"] == {
        "url": "https://creativecommons.org/licenses/by/4.0/",
        "type": "open-access",
    }
    assert merged.values["subjects"] == ["Oncology"]
    assert merged.values["citation_count"] == 42
    assert merged.values["funders"] == [
        {"name": "National Natural Science Foundation of China", "doi": "10.13039/501100001809", "awards": []}
    ]
    assert merged.provenance["license"] == Provenance("pmc", SEED_PMCID, T1)
    assert merged.provenance["citation_count"] == Provenance("crossref", SEED_DOI, T2)
    assert merged.provenance["title"] == Provenance("pubmed", SEED_PMID, T0)
    # the three agree once normalised: "Frontiers in oncology"/"Frontiers in Oncology", "2022"/"2022-03-08",
    # "Frontiers Media S.A."/"Frontiers Media SA"
    assert merged.disagreements == ()
    assert merged.retraction_sources == () and merged.retracted is False


def test_views_are_json_shaped_and_leave_out_what_a_source_does_not_state() -> None:
    pubmed = view_of_pubmed(pubmed_record(), T0)
    assert "pages" not in pubmed.values and "issue" not in pubmed.values
    assert pubmed.values["authors"][0] == {
        "last_name": "Liu",
        "fore_name": "Kun",
        "initials": "K",
        "suffix": None,
        "collective_name": None,
        "orcid": None,
        "affiliations": [],
        "valid": True,
        "equal_contrib": False,
    }
    pmc = view_of_pmc(pmc_front(), T0)
    assert pmc.values["authors"] == pubmed.values["authors"]  # JATS contributors in PubMed's shape
    assert pmc.values["pub_date"] == "2022" and pmc.values["epub_date"] == "2022-03-08"
    crossref = view_of_crossref(crossref_work(), T0)
    assert crossref.values["license"] == {
        "url": "https://creativecommons.org/licenses/by/4.0/",
        "type": "vor",
    }
    assert crossref.values["journal_iso_abbrev"] == "Front. Oncol."
    for v in (pubmed, pmc, crossref):
        assert set(v.values) <= {*FIELDS, "issn_all", "retractions"}
        assert all(not isinstance(x, tuple) for x in v.values.values())


def test_crossref_joins_title_and_subtitle_and_prefers_the_vor_licence() -> None:
    licences = [
        {"URL": "https://example.org/tdm", "content-version": "tdm"},
        {"URL": "https://creativecommons.org/licenses/by/4.0/", "content-version": "vor"},
    ]
    work = crossref_work(title=["Exosomes"], subtitle=["a review"], license=licences)
    values = view_of_crossref(work, T0).values
    assert values["title"] == "Exosomes: a review"
    assert values["license"] == {"url": "https://creativecommons.org/licenses/by/4.0/", "type": "vor"}
    assert len(values["licenses"]) == 2


def test_contributor_initials_follow_pubmed() -> None:
    assert initials("Jane A.") == "JA"
    assert initials("Jean-Pierre") == "JP"
    assert initials(None) is None and initials("") is None
    group = ContributorName(1, name="The ONCO Study Group")
    pmc = dataclasses.replace(pmc_front(), contributors=(group,))
    assert view_of_pmc(pmc, T0).values["authors"][0]["collective_name"] == "The ONCO Study Group"


# ---------------------------------------------------------------------------------------------- rules


def test_the_first_source_of_the_policy_with_a_value_wins() -> None:
    views = [view("crossref", title="Crossref's"), view("pmc", title="PMC's")]
    assert merge(views).values["title"] == "PMC's"
    assert merge([*views, view("pubmed", title="PubMed's")]).values["title"] == "PubMed's"


def test_an_empty_value_is_no_value() -> None:
    views = [
        view("pubmed", title="", authors=[], license={"url": None, "type": None}),
        view("pmc", title="PMC's"),
    ]
    merged = merge(views)
    assert merged.values["title"] == "PMC's"
    assert "authors" not in merged.values and "license" not in merged.values


def test_a_source_the_policy_does_not_name_is_ignored_for_that_field() -> None:
    merged = merge([view("pubmed", citation_count=7, copyright="PubMed's")])
    assert "citation_count" not in merged.values and "copyright" not in merged.values


def test_a_source_that_omits_a_field_keeps_the_stored_value_and_its_provenance() -> None:
    first = merge([view("pmc", "PMC1", T0, copyright="© 2022")])
    later = merge([view("pmc", "PMC1", T1, title="t")], stored=first.as_stored())
    assert later.values["copyright"] == "© 2022"
    assert later.provenance["copyright"] == Provenance("pmc", "PMC1", T0)
    assert later.provenance["title"] == Provenance("pmc", "PMC1", T1)


def test_the_latest_view_of_a_source_counts() -> None:
    old, new = view("pmc", "PMC1", T0, title="old"), view("pmc", "PMC1", T1, title="new")
    assert merge([old, new]).values["title"] == merge([new, old]).values["title"] == "new"


def test_an_overridden_policy_changes_the_winner() -> None:
    policy = policy_from_config({"title": ["crossref", "pubmed"], "publisher": ["crossref"]})
    merged = merge([*seed_views()[:1], view("crossref", title="Crossref's", publisher="Frontiers")], policy)
    assert merged.values["title"] == "Crossref's"
    assert merged.values["publisher"] == "Frontiers"
    assert policy["abstract"] == DEFAULT_POLICY["abstract"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"titel": ["pubmed"]}, "unknown field 'titel'"),
        ({"title": ["pubmed", "scopus"]}, "unknown source 'scopus'"),
        ({"title": ["pmc", "pmc"]}, "named twice"),
        ({"title": []}, "at least one source"),
        ({"title": "pubmed"}, "not the string"),
    ],
)
def test_policy_overrides_are_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        policy_from_config(overrides)


def test_every_field_has_a_policy_of_known_sources() -> None:
    assert set(DEFAULT_POLICY) == set(FIELDS)
    assert set(SHARED_FIELDS) <= set(FIELDS)
    for order in DEFAULT_POLICY.values():
        assert order and set(order) <= set(SOURCES) and len(set(order)) == len(order)


# ---------------------------------------------------------------------------------------------- disagreements


@pytest.mark.parametrize(
    ("name", "value", "other"),
    [
        ("title", "The Role of <i>Tumor</i> Stem Cells.", "the role of tumor  stem cells"),
        ("title", "[Exosomes in cancer].", "Exosomes in cancer"),
        ("doi", "10.3389/FONC.2022.836548", "10.3389/fonc.2022.836548"),
        ("issn", "2234-943x", "2234 943X"),
        ("pub_date", "2022", "2022-03-08"),
        ("pub_date", "2022-03", "2022-03-08"),
        ("pages", "123-9", "123-129"),
        ("pages", "e12-5", "e12-e15"),
        ("pages", "123", "123-129"),
        ("publisher", "Frontiers Media S.A.", "Frontiers Media SA"),
        ("journal_title", "Frontiers in oncology", "Frontiers in Oncology"),
        ("volume", "12 ", "12"),
    ],
)
def test_values_that_differ_only_in_form_agree(name: str, value: str, other: str) -> None:
    assert merge([view("pubmed", **{name: value}), view("crossref", **{name: other})]).disagreements == ()


@pytest.mark.parametrize(
    ("name", "value", "other"),
    [
        ("title", "Exosomes in cancer", "Exosomes in leukaemia"),
        ("doi", "10.3389/fonc.2022.836548", "10.3389/fonc.2022.836549"),
        ("pub_date", "2022", "2021-12-30"),
        ("pub_date", "2022-03-08", "2022-03-09"),
        ("pages", "123-9", "123-130"),
        ("volume", "12", "13"),
        ("issn", "2234-943X", "1234-5678"),
    ],
)
def test_values_that_differ_are_a_disagreement(name: str, value: str, other: str) -> None:
    merged = merge([view("pubmed", "1", **{name: value}), view("crossref", "10.1/x", **{name: other})])
    assert merged.disagreements == (Disagreement(name, "crossref", other, "pubmed", value),)


def test_an_issn_agrees_with_any_issn_the_other_source_names() -> None:
    pubmed = view("pubmed", issn="1111-1111", issn_all=["1111-1111", "2222-2222"])
    crossref = view("crossref", issn="2222-2222", issn_all=["2222-2222"])
    assert merge([pubmed, crossref]).disagreements == ()


def test_only_shared_fields_are_compared() -> None:
    merged = merge([view("pmc", copyright="A", subjects=["x"]), view("crossref", subjects=["y"])])
    assert merged.disagreements == ()


def test_medline_page_ranges_expand() -> None:
    assert expand_pages("123-9") == ("123", "129")
    assert expand_pages("1199-201") == ("1199", "1201")
    assert expand_pages("e12-5") == ("e12", "e15")
    assert expand_pages("S1-S9") == ("s1", "s9")
    assert expand_pages("836548") == ("836548", None)
    assert expand_pages("12-5, 30") == ("12", "15")


# ---------------------------------------------------------------------------------------------- retraction


def test_retraction_statements_of_every_source_are_kept_with_their_source() -> None:
    retraction = {
        "type": "retraction",
        "DOI": "10.3389/fonc.2023.1",
        "source": "publisher",
        "label": "Retraction",
    }
    views = [
        view_of_pubmed(
            pubmed_record(retracted=True, retraction_in=("Front Oncol. 2023;13:1", "37000001")), T0
        ),
        view_of_crossref(crossref_work(updated_by=[retraction]), T1),
    ]
    merged = merge(views)
    assert merged.retracted is True
    assert merged.retraction_sources == (
        {
            "source": "crossref",
            "statement": "updated-by retraction 10.3389/fonc.2023.1 (publisher)",
            "notice": "10.3389/fonc.2023.1",
        },
        {"source": "pubmed", "statement": "PublicationType: Retracted Publication", "notice": None},
        {"source": "pubmed", "statement": "RetractionIn: Front Oncol. 2023;13:1", "notice": "37000001"},
    )
    assert merged.values["updates"][0]["kind"] == "retraction"
    assert merge(views[:1]).retracted and not merge(seed_views()).retracted


def test_an_update_to_a_retraction_notice_is_not_a_retraction() -> None:
    notice = {"type": "retraction", "DOI": "10.3389/fonc.2020.1", "source": "publisher"}
    assert merge([view_of_crossref(crossref_work(update_to=[notice]), T0)]).retracted is False


# ---------------------------------------------------------------------------------------------- properties

_words = st.sampled_from(["Exosomes", "exosomes.", "Tumour", "12", "2022", "2022-03-08", "123-9", "123-129"])
_value_of_kind: dict[str, st.SearchStrategy[Any]] = {
    "title": _words,
    "name": _words,
    "text": _words,
    "doi": st.sampled_from(["10.1000/a", "10.1000/A", "10.1000/b"]),
    "issn": st.sampled_from(["2234-943X", "2234-943x", "1234-5678"]),
    "date": st.sampled_from(["2022", "2022-03", "2022-03-08", "2021"]),
    "pages": st.sampled_from(["123-9", "123-129", "124"]),
    "int": st.integers(0, 3),
    "object": st.fixed_dictionaries(
        {"url": st.sampled_from(["u1", "u2"]), "type": st.none() | st.just("vor")}
    ),
    "list": st.lists(_words, max_size=2),
}
_values = st.dictionaries(st.sampled_from(sorted(FIELDS)), st.just(None), max_size=len(FIELDS)).flatmap(
    lambda chosen: st.fixed_dictionaries({name: _value_of_kind[FIELDS[name]] | st.none() for name in chosen})
)
_views = st.builds(
    SourceView,
    source=st.sampled_from(SOURCES),
    source_id=st.sampled_from(["a", "b"]),
    fetched_at=st.sampled_from([T0, T1]),
    values=_values,
)
_policies = st.fixed_dictionaries(
    {name: st.permutations(SOURCES).map(tuple) for name in ("title", "doi", "pages", "license")}
).map(policy_from_config)


@settings(max_examples=200)
@given(views=st.lists(_views, max_size=5))
def test_property_merging_is_deterministic_and_a_view_twice_is_a_view_once(views: list[SourceView]) -> None:
    assert merge(views) == merge(views)
    assert merge(views + views) == merge(views)


@settings(max_examples=200)
@given(views=st.lists(_views, max_size=5), data=st.data(), policy=_policies)
def test_property_the_order_of_arrival_does_not_matter(
    views: list[SourceView], data: st.DataObject, policy: Any
) -> None:
    shuffled = data.draw(st.permutations(views))
    assert merge(shuffled, policy) == merge(views, policy)


@settings(max_examples=200)
@given(views=st.lists(_views, min_size=1, max_size=4))
def test_property_merging_with_what_the_merge_stored_changes_nothing(views: list[SourceView]) -> None:
    once = merge(views)
    assert merge(views, stored=once.as_stored()) == once
    assert merge([], stored=once.as_stored()).values == once.values


@settings(max_examples=200)
@given(views=st.lists(_views, min_size=1, max_size=4), data=st.data())
def test_property_a_later_record_that_omits_a_field_never_erases_it(
    views: list[SourceView], data: st.DataObject
) -> None:
    stored = merge(views)
    if not stored.values:
        return
    name = data.draw(st.sampled_from(sorted(stored.values)))
    origin = stored.provenance[name]
    # the record the value came from arrives again, later, without the field
    later = SourceView(
        origin.source, origin.source_id, T2, {k: v for k, v in _latest(views, origin).items() if k != name}
    )
    again = merge([*views, later], stored=stored.as_stored())
    assert name in again.values
    others = [v for v in views if v.source != origin.source]
    if not any(v.values.get(name) not in (None, "", [], {}) for v in others):
        assert again.values[name] == stored.values[name]
        assert again.provenance[name] == origin


def _latest(views: list[SourceView], origin: Provenance) -> dict[str, Any]:
    same = [v for v in views if v.source == origin.source and v.source_id == origin.source_id]
    return dict(same[-1].values) if same else {}


@settings(max_examples=200)
@given(views=st.lists(_views, max_size=5))
def test_property_merged_values_come_from_a_view_of_a_source_the_policy_names(
    views: list[SourceView],
) -> None:
    merged = merge(views)
    for name, value in merged.values.items():
        origin = merged.provenance[name]
        assert origin.source in DEFAULT_POLICY[name]
        assert any(v.source == origin.source and v.values.get(name) == value for v in views)


@settings(max_examples=200)
@given(views=st.lists(_views, max_size=4))
def test_property_disagreements_are_pairs_of_sources_in_name_order(views: list[SourceView]) -> None:
    for d in merge(views).disagreements:
        assert d.field in SHARED_FIELDS and d.source < d.other_source


@given(
    st.from_regex(r"10\.[0-9]{4,6}/[A-Za-z0-9._;()/-]{1,20}", fullmatch=True),
    st.sampled_from(["", "doi:", "DOI: ", "https://doi.org/", "http://dx.doi.org/"]),
)
def test_property_doi_normalisation_is_stable_and_disagreements_ignore_case(doi: str, prefix: str) -> None:
    once = normalize_doi(prefix + doi)
    assert normalize_doi(once) == once
    assert merge([view("pubmed", doi=doi), view("crossref", doi=prefix + doi.upper())]).disagreements == ()


def test_the_merge_module_is_pure() -> None:
    tree = ast.parse(Path(enrich.merge.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported  # the walk found the imports
    for module in imported:
        assert module.split(".")[0] not in {"requests", "sqlalchemy", "db", "lxml"}, module
        assert module not in {"enrich.crossref", "enrich.pmc_jats", "harvester.sources.pubmed_xml"}, module
