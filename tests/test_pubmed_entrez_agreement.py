"""parse_pubmed agrees with Biopython's Bio.Entrez, an independent reading of the same recorded bytes.

Bio.Entrez reads through expat and the NLM DTDs it ships; these tests never let it reach the network (see
``no_dtd_downloads``). Two recorded quirks are smoothed over in memory before Biopython sees a file, and
only for Biopython: a record saved without XML declaration and DOCTYPE is given both (Bio.Entrez refuses
XML without a DTD), and an ``http://`` DTD address is written as ``https://`` (Bio.Entrez refuses plain-HTTP
DTD addresses even when, as here, it has the file locally and would not fetch it).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import Bio.Entrez.Parser
import pytest
from Bio import Entrez

from harvester.core.ids import doi_or_none, pmcid_or_none
from harvester.core.records import Article
from harvester.core.xmlsafe import parse_document
from harvester.sources.pubmed_xml import parse_pubmed
from tests.conftest import shared_fixture
from tests.test_pubmed_xml import read_xml, shared_record_files

_DECLARATION = b'<?xml version="1.0" ?>\n'
_DOCTYPE = (
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)
_DOCTYPE_HTTP = re.compile(rb'(<!DOCTYPE[^>]*")http://')
_XML_WHITESPACE = re.compile(r"[ \t\r\n]+")
_YEAR = re.compile(r"\b(\d{4})\b")


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise OSError("tests must not reach the network: Bio.Entrez wanted to download a DTD it does not ship")


@pytest.fixture(autouse=True)
def no_dtd_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bio.Entrez downloads DTDs it lacks; offline that must fail at once and loudly, not hang."""
    monkeypatch.setattr(Bio.Entrez.Parser, "urlopen", _refuse_network)


def for_biopython(data: bytes) -> bytes:
    """The document as Bio.Entrez accepts it (see the module docstring); parse_pubmed gets the original."""
    if not data.lstrip().startswith(b"<?xml"):
        data = _DECLARATION + _DOCTYPE + b"<PubmedArticleSet>" + data + b"</PubmedArticleSet>"
    return _DOCTYPE_HTTP.sub(rb"\1https://", data, count=1)


def plain(fragment: Any) -> str:
    """Bio.Entrez text (read with escape=True, so inline tags are still tags) as plain text.

    The fragment is parsed as XML and its text nodes joined, which is how a reader sees it; a regex
    tag-stripper would eat "P<0.001" (cyanheads/pubmed-mcp-server#94), hence escape=True.
    """
    root = parse_document(f"<x>{fragment}</x>".encode())
    return "".join(str(text) for text in root.itertext())


def collapse(text: str) -> str:
    return _XML_WHITESPACE.sub(" ", text).strip(" ")


def assert_same_text(ours: str | None, theirs: Any, what: str) -> None:
    """Equal once both are plain text with whitespace runs collapsed.

    Inside MathML the whitespace between tokens is layout: parse_pubmed drops it ("V.O2max") while
    Bio.Entrez keeps the indentation, so there the comparison ignores whitespace altogether, which still
    proves no character was lost or invented.
    """
    expected = collapse(plain(theirs)) if theirs is not None else ""
    got = ours or ""
    if "MathML" in str(theirs):
        assert re.sub(r"\s+", "", got) == re.sub(r"\s+", "", expected), what
    else:
        assert got == expected, what


def entrez_records(data: bytes) -> dict[str, Any]:
    """Every PubmedArticle and PubmedBookArticle Bio.Entrez finds, by PMID."""
    result = Entrez.read(io.BytesIO(for_biopython(data)), validate=False, escape=True)  # type: ignore[no-untyped-call]
    if isinstance(result, dict):  # DTDs since 2015; the 2013 DTD makes the set a plain list
        result = [*result.get("PubmedArticle", []), *result.get("PubmedBookArticle", [])]
    records: dict[str, Any] = {}
    for record in result:
        citation = record.get("MedlineCitation") or record["BookDocument"]
        records[str(citation["PMID"])] = record
    return records


def author_names(author_list: Any) -> list[str]:
    """Last names, or the collective name, in order; as plain text with whitespace collapsed."""
    return [collapse(plain(a.get("LastName") or a.get("CollectiveName") or "")) for a in author_list]


def entrez_authors(record: Any) -> list[str]:
    if "MedlineCitation" in record:
        return author_names(record["MedlineCitation"]["Article"].get("AuthorList", []))
    document = record["BookDocument"]
    for author_list in document.get("AuthorList", []):
        if author_list.attributes.get("Type", "authors") == "authors":
            return author_names(author_list)
    for author_list in document["Book"].get("AuthorList", []):
        if author_list.attributes.get("Type") == "authors":
            return author_names(author_list)
    return []


def entrez_ids(record: Any) -> tuple[str | None, str | None]:
    """DOI (ArticleIdList, else a valid ELocationID) and PMCID, normalised as the records promise."""
    data = record.get("PubmedData") or record.get("PubmedBookData") or {}
    doi = pmcid = None
    for article_id in data.get("ArticleIdList", []):
        id_type = article_id.attributes.get("IdType")
        if id_type == "doi" and doi is None:
            doi = doi_or_none(plain(article_id))
        elif id_type == "pmc" and pmcid is None:
            pmcid = pmcid_or_none(plain(article_id))
    if doi is None and "MedlineCitation" in record:
        for eloc in record["MedlineCitation"]["Article"].get("ELocationID", []):
            if eloc.attributes.get("EIdType") == "doi" and eloc.attributes.get("ValidYN", "Y") == "Y":
                doi = doi_or_none(plain(eloc))
                if doi:
                    break
    return doi, pmcid


def entrez_title_abstract_year(record: Any) -> tuple[Any, list[Any], int | None]:
    if "MedlineCitation" in record:
        article = record["MedlineCitation"]["Article"]
        title = article.get("ArticleTitle")
        abstract = article.get("Abstract", {})
        pub_date = article["Journal"]["JournalIssue"]["PubDate"]
    else:
        document = record["BookDocument"]
        title = document.get("ArticleTitle") or document["Book"].get("BookTitle")
        abstract = document.get("Abstract", {})
        pub_date = document["Book"].get("PubDate", {})
    year_text = pub_date.get("Year") or pub_date.get("MedlineDate") or ""
    match = _YEAR.search(str(year_text))
    return title, list(abstract.get("AbstractText", [])), int(match.group(1)) if match else None


def recorded_pairs(relpath: str) -> Iterator[tuple[Article, Any]]:
    data = read_xml(shared_fixture(relpath))
    theirs = entrez_records(data)
    ours = [r for r in parse_pubmed(data) if isinstance(r, Article)]
    assert sorted(a.pmid for a in ours) == sorted(theirs), "both parsers see the same records"
    for article in ours:
        yield article, theirs[article.pmid]


@pytest.mark.parametrize("relpath", shared_record_files())
def test_agrees_with_bio_entrez(relpath: str) -> None:
    for ours, theirs in recorded_pairs(relpath):
        title, sections, year = entrez_title_abstract_year(theirs)
        assert_same_text(ours.title, title, f"{ours.pmid} title")
        their_labels = [s.attributes.get("Label") for s in sections]
        our_sections = ours.abstract.sections if ours.abstract else ()
        assert [s.label for s in our_sections] == their_labels, f"{ours.pmid} labels"
        # Section by section (stricter than comparing the joined text), each as plain text.
        for mine, their in zip(our_sections, sections, strict=True):
            assert_same_text(mine.text, their, f"{ours.pmid} abstract section {mine.label}")
        names = [a.last_name or a.collective_name or "" for a in ours.authors]
        assert names == entrez_authors(theirs), f"{ours.pmid} authors"
        assert (ours.doi, ours.pmcid) == entrez_ids(theirs), f"{ours.pmid} ids"
        assert ours.pub_date.year == year, f"{ours.pmid} year"


def test_a_missing_dtd_is_refused_not_fetched() -> None:
    """The guard above works: a DTD Biopython does not ship makes it fail instead of downloading."""
    data = shared_fixture("eutils-pubmed-xml/pubmed2.xml").read_bytes()
    unknown = re.sub(rb"pubmed_\d+\.dtd", b"pubmed_990101.dtd", data, count=1)
    with pytest.raises(RuntimeError, match=r"pubmed_990101\.dtd"):
        Entrez.read(io.BytesIO(unknown), validate=False)  # type: ignore[no-untyped-call]
