"""Identifier validation and normalisation (harvester.core.ids)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from harvester.core.errors import InvalidIdentifierError
from harvester.core.ids import normalize_doi, normalize_orcid, normalize_pmcid, normalize_pmid


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [("35350566", "35350566"), (" 35350566 ", "35350566"), ("PMID:35350566", "35350566"), ("pmid 042", "42")],
)
def test_pmid_forms(given_value: str, expected: str) -> None:
    assert normalize_pmid(given_value) == expected


@pytest.mark.parametrize("bad", ["abc", "0", "000", "", "-5", "1.5", "12345678901", "３５", "PMC123"])
def test_bad_pmids(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid PMID"):
        normalize_pmid(bad)


@pytest.mark.parametrize(
    "given_value", ["PMC8958025", "pmc8958025", "8958025", "PMC8958025.2", " Pmc8958025 ", "PMC:8958025"]
)
def test_pmcid_forms(given_value: str) -> None:
    assert normalize_pmcid(given_value) == "PMC8958025"


@pytest.mark.parametrize("bad", ["PMC", "PMCX1", "PMC0", "PMID123", "", "PMC 12 3"])
def test_bad_pmcids(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid PMCID"):
        normalize_pmcid(bad)


@pytest.mark.parametrize(
    "given_value",
    [
        "10.3389/fonc.2022.836548",
        "10.3389/FONC.2022.836548",
        "doi:10.3389/fonc.2022.836548",
        "DOI: 10.3389/fonc.2022.836548",
        "https://doi.org/10.3389/FONC.2022.836548",
        "http://dx.doi.org/10.3389/fonc.2022.836548",
        "doi.org/10.3389/fonc.2022.836548",
        "https://doi.org/10.3389%2Ffonc.2022.836548",
    ],
)
def test_doi_forms(given_value: str) -> None:
    assert normalize_doi(given_value) == "10.3389/fonc.2022.836548"


def test_doi_with_parentheses_and_unicode_is_kept() -> None:
    assert normalize_doi("10.1002/(SICI)1098-1004(200001)15:1<114::AID-HUMU21>3.0.CO;2-4") == (
        "10.1002/(sici)1098-1004(200001)15:1<114::aid-humu21>3.0.co;2-4"
    )
    assert normalize_doi("10.1234/ÄBC") == "10.1234/äbc"


@pytest.mark.parametrize(
    "bad",
    ["not-a-doi", "10.1/x", "10.3389", "10.3389/", "11.3389/x", "10.3389/a b", "10.3389/a\x00b", "x" * 2000],
)
def test_bad_dois(bad: str) -> None:
    with pytest.raises(InvalidIdentifierError, match="invalid DOI"):
        normalize_doi(bad)


_doi_suffix = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp", "Cf", "Co", "Cn")),
    min_size=1,
    max_size=40,
)


@given(registrant=st.integers(min_value=1000, max_value=999999999), suffix=_doi_suffix)
def test_doi_normalisation_is_idempotent(registrant: int, suffix: str) -> None:
    try:
        once = normalize_doi(f"10.{registrant}/{suffix}")
    except InvalidIdentifierError:
        return
    assert normalize_doi(once) == once
    assert normalize_doi(f"https://doi.org/{once}") == once or "%" in once
    assert normalize_doi(once.upper()) == normalize_doi(once.upper().lower())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0000-0002-1825-0097", "0000-0002-1825-0097"),
        ("https://orcid.org/0000-0002-1825-0097", "0000-0002-1825-0097"),
        ("http://orcid.org/0000000218250097", "0000-0002-1825-0097"),
        ("0000-0002-1694-233x", "0000-0002-1694-233X"),
        ("0000-0002-1825-0098", None),  # wrong check digit
        ("not an orcid", None),
        (None, None),
    ],
)
def test_orcid(value: str | None, expected: str | None) -> None:
    assert normalize_orcid(value) == expected
