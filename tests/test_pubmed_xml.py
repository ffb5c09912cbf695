"""parse_pubmed against recorded NCBI responses ($HARVEST_FIXTURES) and small hand-written documents."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, strategies as st
from lxml import etree

from harvester.core import xmltext
from harvester.core.errors import InvalidIdentifierError, ParseError
from harvester.core.ids import doi_or_none, normalize_pmid, pmcid_or_none
from harvester.core.records import (
    Abstract,
    AbstractSection,
    Article,
    ArticleId,
    Author,
    CommentCorrection,
    DatedEvent,
    DeletedCitation,
    ELocationId,
    Grant,
    Keyword,
    MeshHeading,
    MeshQualifier,
    PartialDate,
    PublicationType,
    Reference,
)
from harvester.core.xmlsafe import iterparse_safe, parse_document
from harvester.sources import pubmed_xml
from harvester.sources.pubmed_xml import parse_medline_date, parse_pubmed
from tests.conftest import FIXTURES_DIR, HARVEST_FIXTURES, shared_fixture

PUBMED_XML = "eutils-pubmed-xml"
UPDATE_FILES = "medline-updatefiles"


def shared_record_files() -> list[object]:
    """One pytest.param per PubMed XML file in $HARVEST_FIXTURES (skipped when unset, failing when empty)."""
    root = os.environ.get(HARVEST_FIXTURES)
    if not root:
        reason = f"{HARVEST_FIXTURES} is not set: point it at the recorded NCBI responses to run this test"
        return [pytest.param(None, id="unset", marks=pytest.mark.skip(reason=reason))]
    base = Path(root)
    found = sorted(p.relative_to(base).as_posix() for p in (base / PUBMED_XML).glob("*.xml"))
    found += sorted(
        p.relative_to(base).as_posix()
        for p in (base / UPDATE_FILES).rglob("*")
        if p.name.endswith((".xml", ".xml.gz"))
    )
    if not found:
        return [pytest.param(f"{PUBMED_XML}/*.xml", id="none-found")]
    return [pytest.param(rel, id=rel) for rel in found]


def read_xml(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def articles(relpath: str) -> list[Article]:
    records = list(parse_pubmed(shared_fixture(relpath)))
    assert all(isinstance(r, Article) for r in records)
    return [r for r in records if isinstance(r, Article)]


def article(relpath: str, pmid: str | None = None) -> Article:
    found = articles(relpath)
    if pmid is None:
        assert len(found) == 1
        return found[0]
    return next(a for a in found if a.pmid == pmid)


def empty_strings(value: object, path: str = "") -> Iterator[str]:
    """Where a record holds "" (the records promise None instead), except a label-only section's text."""
    if value == "" and not path.endswith("sections[].text"):
        yield path
    elif isinstance(value, tuple):
        for item in value:
            yield from empty_strings(item, path + "[]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from empty_strings(getattr(value, f.name), f"{path}.{f.name}")


def record_title_text(root: etree._Element, pmid: str) -> str | None:
    """The itertext of a record's ArticleTitle (or BookTitle), found by XPath for comparison."""
    for title in cast(
        list[etree._Element],
        root.xpath(
            "//*[MedlineCitation/PMID=$p or BookDocument/PMID=$p]//*[self::ArticleTitle or self::BookTitle]",
            p=pmid,
        ),
    ):
        return "".join(str(text) for text in title.itertext())
    return None


def wrap(*records: bytes) -> bytes:
    return b"<PubmedArticleSet>" + b"".join(records) + b"</PubmedArticleSet>"


def minimal(
    pmid: str = "1", article_body: bytes = b"", citation_extra: bytes = b"", data: bytes = b""
) -> bytes:
    """A PubmedArticle with only what a test needs."""
    pmid_xml = f'<PMID Version="1">{pmid}</PMID>'.encode() if pmid else b""
    return (
        b'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">'
        + pmid_xml
        + b"<Article><ArticleTitle>T</ArticleTitle>"
        + article_body
        + b"</Article>"
        + citation_extra
        + b"</MedlineCitation><PubmedData>"
        + data
        + b"</PubmedData></PubmedArticle>"
    )


# ------------------------------------------------------------------------------- every recorded file


@pytest.mark.parametrize("relpath", shared_record_files())
def test_every_recorded_record_parses_with_its_own_pmid_and_ids(relpath: str) -> None:
    path = shared_fixture(relpath)
    # An independent oracle: the same file read whole by lxml and queried with XPath.
    root = parse_document(read_xml(path))
    records = [root] if root.tag in ("PubmedArticle", "PubmedBookArticle") else list(root)
    expected: list[tuple[str, tuple[ArticleId, ...]]] = []
    deleted: list[str] = []
    for record in records:
        if record.tag == "DeleteCitation":
            deleted += [p.text.strip() for p in record.findall("PMID") if p.text]
            continue
        pmid = record.findtext("MedlineCitation/PMID") or record.findtext("BookDocument/PMID")
        # The record's own lists sit one level down (PubmedData, BookDocument, PubmedBookData); the
        # ArticleIdLists of its references are deeper and must not be counted.
        own_ids = tuple(
            ArticleId(i.get("IdType") or "pubmed", (i.text or "").strip())
            for i in record.findall("*/ArticleIdList/ArticleId")
        )
        expected.append(((pmid or "").strip(), tuple(dict.fromkeys(own_ids))))

    parsed = list(parse_pubmed(path))

    got_articles = [r for r in parsed if isinstance(r, Article)]
    assert [(a.pmid, a.ids) for a in got_articles] == expected
    assert [r.pmid for r in parsed if isinstance(r, DeletedCitation)] == deleted
    for a in got_articles:
        assert not list(empty_strings(a)), a.pmid
        assert a.title is not None or not (record_title_text(root, a.pmid) or "").strip(), a.pmid
        assert a.pub_date.year is not None, a.pmid
        assert [x.position for x in a.authors] == list(range(1, len(a.authors) + 1))
        if a.doi is not None:
            assert a.doi == a.doi.lower()


@pytest.mark.parametrize("relpath", shared_record_files())
def test_keep_raw_round_trips_every_recorded_record(relpath: str) -> None:
    path = shared_fixture(relpath)
    with_raw = [r for r in parse_pubmed(path, keep_raw=True) if isinstance(r, Article)]
    without_raw = [r for r in parse_pubmed(path) if isinstance(r, Article)]
    assert with_raw == without_raw  # raw_xml takes no part in equality
    assert all(a.raw_xml is None for a in without_raw)
    for a in with_raw:
        assert a.raw_xml is not None
        assert a.raw_xml.startswith((b"<PubmedArticle>", b"<PubmedBookArticle>"))
        assert list(parse_pubmed(wrap(a.raw_xml))) == [a]
        assert list(parse_pubmed(a.raw_xml)) == [a]  # a fragment on its own is a one-record document
    again = [r for r in parse_pubmed(path, keep_raw=True) if isinstance(r, Article)]
    assert [a.raw_xml for a in again] == [a.raw_xml for a in with_raw]


# ------------------------------------------------------------------------------- features the MANIFEST names


def test_structured_abstract_keeps_labels_and_categories() -> None:
    a = article(f"{PUBMED_XML}/metapub-sample_article_23435529.xml")
    assert a.abstract is not None
    assert [(s.label, s.nlm_category) for s in a.abstract.sections] == [
        ("PURPOSE", "OBJECTIVE"),
        ("PATIENTS AND METHODS", "METHODS"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSION", "CONCLUSIONS"),
    ]
    unassigned = article(f"{PUBMED_XML}/metapub-35573891.xml")
    assert unassigned.abstract is not None
    assert [(s.label, s.nlm_category) for s in unassigned.abstract.sections] == [
        ("AIM", "UNASSIGNED"),
        ("METHODS", "UNASSIGNED"),
        ("RESULTS", "UNASSIGNED"),
        ("CONCLUSION", "UNASSIGNED"),
    ]
    gut = article(f"{PUBMED_XML}/pubmed4.xml")
    assert gut.abstract is not None
    assert [s.label for s in gut.abstract.sections] == ["OBJECTIVE", "DESIGN", "RESULTS", "CONCLUSIONS"]
    assert all(s.nlm_category is None for s in gut.abstract.sections)
    assert gut.abstract.text.startswith("OBJECTIVE: Telomere shortening occurs as an early event")
    assert "\nDESIGN: We measured prediagnostic leucocyte telomere length in 386" in gut.abstract.text


def test_collective_name_is_an_author_in_its_place() -> None:
    a = article(f"{PUBMED_XML}/pubmed7.xml")
    assert len(a.authors) == 9
    last = a.authors[-1]
    assert last == Author(position=9, collective_name="Canadian Respiratory Research Network")
    assert [x.last_name for x in a.authors[:8]] == [
        "Guo",
        "Capaldi",
        "Kirby",
        "Sheikh",
        "Svenningsen",
        "McCormack",
        "Fenster",
        "Parraga",
    ]


def test_orcid_in_url_form_is_normalised() -> None:
    a = article(f"{PUBMED_XML}/pubmed7.xml")
    orcids = {x.last_name: x.orcid for x in a.authors if x.orcid}
    assert orcids == {"Capaldi": "0000-0002-4590-7461", "Fenster": "0000-0003-3525-2788"}


def test_orcid_in_bare_form_is_normalised() -> None:
    a = article(f"{PUBMED_XML}/metapub-32496081.xml")
    castiello = next(x for x in a.authors if x.last_name == "Castiello")
    assert castiello.orcid == "0000-0003-0629-1286"
    assert castiello.affiliations == ("University of Padua.",)


def test_affiliations_keep_every_affiliation_info_in_order() -> None:
    a = article(f"{PUBMED_XML}/pubmed7.xml")
    assert a.authors[6].affiliations == (
        "University of Western Ontario, Robarts Research Institute, London, Ontario, Canada.",
        "University of Western Ontario, Graduate Program in Biomedical Engineering, London, Ontario, Canada.",
        "University of Western Ontario, Department of Medical Biophysics, London, Ontario, Canada.",
    )


def test_equal_contribution_flag() -> None:
    a = article(f"{PUBMED_XML}/metapub-35573891.xml")
    assert [(x.last_name, x.equal_contrib) for x in a.authors[:3]] == [
        ("Wang", True),
        ("Wu", True),
        ("Chu", False),
    ]


def test_medline_date_in_a_recorded_file() -> None:
    a = article(f"{PUBMED_XML}/fatcat-pubmed_31393839.xml")
    assert a.pub_date == PartialDate(year=2019, raw="2019")
    ranged = article(f"{UPDATE_FILES}/costosys-pubmedsample18n0001.xml.gz", "10188493")
    assert ranged.pub_date == PartialDate(year=1998, month=12, raw="1998 Dec-1999 Jan")


def test_season_is_kept() -> None:
    spring = article(f"{PUBMED_XML}/pubmed1.xml", "12091962")
    assert spring.pub_date == PartialDate(year=1990, season="Spring", raw="1990 Spring")
    assert spring.pub_date.iso == "1990"
    quarter = article(f"{PUBMED_XML}/metapub-23657305.xml")
    assert quarter.pub_date == PartialDate(year=2013, season="Jan-Mar", raw="2013 Jan-Mar")


def test_retraction_in_and_retracted_publication() -> None:
    a = article(f"{PUBMED_XML}/agr-21976771.xml")
    assert a.retracted
    assert PublicationType("Retracted Publication", "D016441") in a.publication_types
    assert a.comments_corrections == (
        CommentCorrection("RetractionIn", "J Exp Bot. 2021 Feb 2;72(2):775", "33428752"),
    )
    assert a.retraction_reasons == (
        "PublicationType: Retracted Publication",
        "CommentsCorrections RetractionIn: J Exp Bot. 2021 Feb 2;72(2):775",
    )
    assert not article(f"{PUBMED_XML}/pubmed4.xml").retracted


def test_erratum_in() -> None:
    a = article(f"{PUBMED_XML}/metapub-35649368.xml")
    assert (
        CommentCorrection(
            "ErratumIn",
            "Cell Rep. 2022 Jun 28;39(13):111044. doi: 10.1016/j.celrep.2022.111044.",
            "35767954",
        )
        in a.comments_corrections
    )
    assert not a.retracted
    old = article(f"{PUBMED_XML}/agr-2.xml")
    assert old.comments_corrections == (
        CommentCorrection("ErratumIn", "Biochem Pharmacol. 1975 Aug 15;24(16):1517-21", "8"),
    )


def test_author_suffix() -> None:
    a = article(f"{PUBMED_XML}/metapub-26568896.xml")
    wise = next(x for x in a.authors if x.suffix)
    assert (wise.last_name, wise.fore_name, wise.initials, wise.suffix) == ("Wise", "John Pierce", "JP", "Sr")


def test_book_chapter() -> None:
    a = article(f"{PUBMED_XML}/agr-20301347.xml")
    assert a.record_type == "book-article"
    assert a.pmid == "20301347"
    assert a.title == "Congenital Myasthenic Syndromes"
    assert a.book_title == "GeneReviews®"
    assert a.publisher == "University of Washington, Seattle"
    assert a.pub_date == PartialDate(year=1993, raw="1993")
    # Chapter authors only: the book's editors (Adam, Ardinger, ...) are left out.
    assert [(x.last_name, x.suffix) for x in a.authors] == [
        ("Abicht", None),
        ("Müller", "S"),
        ("Lochmüller", None),
    ]
    assert a.ids == (ArticleId("bookaccession", "NBK1168"), ArticleId("pubmed", "20301347"))
    assert a.doi is None and a.pmcid is None
    assert a.abstract is not None
    assert [s.label for s in a.abstract.sections] == [
        "CLINICAL CHARACTERISTICS",
        "DIAGNOSIS/TESTING",
        "MANAGEMENT",
        "GENETIC COUNSELING",
    ]
    assert a.abstract.sections[2].text.startswith("Treatment of manifestations: Most individuals with CMS")
    assert a.abstract.copyright is not None
    assert a.abstract.copyright.startswith("Copyright © 1993-2021, University of Washington, Seattle.")
    assert a.date_revised == PartialDate(year=2016, month=7, day=14, raw="2016 Jul 14")
    assert a.grants == (Grant("HHSN276201400262U", "LM", "NLM NIH HHS", "United States"),)
    assert a.publication_types == (PublicationType("Review", "D016454"),)
    assert a.languages == ("eng",)
    assert a.publication_status == "ppublish"
    assert [e.kind for e in a.events] == ["pubmed", "medline", "entrez"]
    assert a.journal.title is None


def test_book_chapter_title_with_markup_and_references() -> None:
    a = article(f"{PUBMED_XML}/metapub-sample_article_20301577.xml")
    assert a.title == "CACNA1C-Related Disorders"
    assert a.references[1] == Reference(
        citation=(
            "Atsuta Y, Tomizawa RR, Levin M, Tabin CJ. L-type voltage-gated Ca(2+) channel CaV1.2 regulates "
            "chondrogenesis during limb development. Proc Natl Acad Sci U S A. 2019;116:21592-601."
        ),
        pmid="31591237",
        pmcid="PMC6815189",
    )


def test_whole_book_without_chapter_takes_the_book_title() -> None:
    a = article(f"{PUBMED_XML}/eutilsjson-efetch.pubmedbook.xml")
    assert a.record_type == "book-article"
    assert a.title == a.book_title == "GeneReviews™"
    assert a.authors == ()  # editors only
    assert a.abstract is not None
    assert (
        a.abstract.copyright
        == "Copyright © 1993-2012, University of Washington, Seattle. All rights reserved."
    )


def test_inline_markup_is_flattened_not_cut() -> None:
    a = article(f"{PUBMED_XML}/pubmed4.xml")
    # <i>TERT</i> in the title; r<sup>2</sup>&lt;0.25 and p<sub>trend</sub> in the RESULTS section.
    assert a.title == (
        "Leucocyte telomere length, genetic variants at the TERT gene region and risk of pancreatic cancer."
    )
    assert a.abstract is not None
    results = a.abstract.sections[2].text
    assert (
        "Three SNPs at TERT (linkage disequilibrium r2<0.25) were associated with pancreatic cancer risk,"
        in results
    )
    assert "95% CI 1.07 to 2.78; ptrend=0.048). Results remained unchanged" in results
    assert results.endswith(
        "The minor allele for rs401681 was associated with shorter telomere length (p=0.023)."
    )


def test_mathml_is_flattened_to_its_tokens() -> None:
    a = article(f"{PUBMED_XML}/pubmed6.xml")
    assert a.abstract is not None
    text = a.abstract.text
    assert "maximal oxygen uptake ( V.O2max ) 67.6 ± 4.1 ml·kg-1·min-1] homogeneous" in text
    assert "were the best predictors of V.O2max (r = 0.72-0.79; P < 0.001)." in text
    assert "<" not in text.replace("P < 0.001", "")
    mri = article(f"{PUBMED_XML}/pubmed7.xml")
    assert mri.abstract is not None
    assert (
        "(1)\xa0inhaled He3/Xe129\u2009MRI ventilation and apparent diffusion coefficients"
        in mri.abstract.text
    )


def test_other_abstracts() -> None:
    a = article(f"{PUBMED_XML}/eutilsjson-efetch.pubmedexample.xml", "17284678")
    assert a.abstract == Abstract((AbstractSection("Lorem ipsum and ipsum lorem.", "dummy-label"),))
    assert a.other_abstracts == (
        Abstract(
            (AbstractSection("Foo bar!"), AbstractSection("Bazz buzz!")),
            kind="AAMC",
            copyright="No copyright, this time!",
        ),
        Abstract((AbstractSection("Foo bar!"),), kind="AIDS"),
    )
    german = article(f"{UPDATE_FILES}/costosys-pubmedsample18n0001.xml.gz", "23326248")
    assert [(o.kind, o.language) for o in german.other_abstracts] == [("Publisher", "ger")]
    assert german.other_abstracts[0].text.startswith("Obwohl die endovaskuläre Katheter-Embolisation")


def test_empty_article_set_yields_nothing() -> None:
    assert list(parse_pubmed(shared_fixture(f"{PUBMED_XML}/metapub-37909814.xml"))) == []


def test_delete_citation_yields_one_record_per_pmid() -> None:
    path = shared_fixture(f"{UPDATE_FILES}/derived/pubmedsample_2019.excerpt-DeleteCitation.xml")
    records = list(parse_pubmed(path))
    assert records == [
        DeletedCitation(pmid, 1)
        for pmid in ("23203860", "23203861", "23203892", "23203893", "23203894", "23203895", "23203896")
    ]


def test_reference_ids_stay_out_of_the_article_ids() -> None:
    a = article(f"{PUBMED_XML}/biocommons-test_eutils_xmlfacades_pubmedarticle_29915538.xml")
    assert a.ids == (
        ArticleId("pubmed", "29915538"),
        ArticleId("pmc", "PMC5994433"),
        ArticleId("doi", "10.3389/fphar.2018.00576"),
    )
    assert a.doi == "10.3389/fphar.2018.00576"
    assert a.pmcid == "PMC5994433"
    assert len(a.references) == 45
    assert a.references[0].pmid == "29246950"
    assert a.references[0].doi == "10.2337/dc17-0417"
    assert a.references[1].doi == "10.1016/s2213-8587(17)30092-x"  # lower-cased like every stored DOI
    assert a.doi not in {r.doi for r in a.references}


def test_many_reference_lists_are_all_read() -> None:
    a = article(f"{PUBMED_XML}/fatcat-pubmed_19129924.xml")
    assert len(a.references) == 11  # eleven ReferenceList elements, one Reference each
    assert a.references[0] == Reference("Eur J Neurosci. 2004 Nov;20(10):2671-80", "15548210")
    assert a.doi == "10.3389/neuro.11.006.2008"


def test_journal_citation_fields() -> None:
    a = article(f"{PUBMED_XML}/pubmed4.xml")
    assert a.pmid_version == 1
    assert a.medline_status == "MEDLINE"
    assert a.publication_status == "ppublish"
    assert a.journal.title == "Gut"
    assert a.journal.iso_abbrev == "Gut"
    assert a.journal.medline_ta == "Gut"
    assert a.journal.nlm_unique_id == "2985108R"
    assert a.journal.issn_electronic == "1468-3288"
    assert a.journal.issn_print is None
    assert a.journal.issn_linking == "0017-5749"
    assert a.journal.country == "England"
    assert (a.volume, a.issue, a.pages) == ("66", "6", "1116-1122")
    assert a.pub_date == PartialDate(year=2017, month=6, raw="2017 Jun")
    assert a.elocation_ids == (ELocationId("doi", "10.1136/gutjnl-2016-312510"),)
    assert a.ids[-1] == ArticleId("mid", "NIHMS857349")
    assert a.date_completed == PartialDate(year=2017, month=8, day=3, raw="2017 Aug 3")
    assert a.date_revised == PartialDate(year=2018, month=4, day=17, raw="2018 Apr 17")
    assert a.coi_statement == "Competing interests: None declared."
    assert a.keywords == (Keyword("PANCREATIC CANCER", "NOTNLM", True),)
    assert a.mesh[0] == MeshHeading(
        "Adenocarcinoma",
        "D000230",
        False,
        None,
        (MeshQualifier("epidemiology", "Q000453", True), MeshQualifier("genetics", "Q000235", True)),
    )
    assert a.mesh[0].is_major
    assert [c.name for c in a.chemicals] == ["TERT protein, human", "Telomerase"]
    assert a.chemicals[1].registry_number == "EC 2.7.7.49" and a.chemicals[1].ui == "D019098"
    assert len(a.grants) == 35
    assert a.grants[0] == Grant("KL2 TR001100", "TR", "NCATS NIH HHS", "United States")
    assert a.comments_corrections[0] == CommentCorrection("CommentIn", "Gut. 2017 Jun;66(6):1", "27920200")
    assert a.languages == ("eng",)
    assert a.publication_types[:2] == (
        PublicationType("Journal Article", "D016428"),
        PublicationType("Observational Study", "D064888"),
    )


def test_events_put_article_dates_first_then_history_in_source_order() -> None:
    a = article(f"{PUBMED_XML}/pubmed4.xml")
    assert [e.kind for e in a.events] == [
        "Electronic",
        "received",
        "revised",
        "accepted",
        "pmc-release",
        "pubmed",
        "medline",
        "entrez",
    ]
    assert a.epub_date == PartialDate(year=2016, month=10, day=21, raw="2016 Oct 21")
    assert a.events[4] == DatedEvent("pmc-release", PartialDate(year=2018, month=6, day=1, raw="2018 Jun 1"))


def test_print_issn_medline_journal_info_and_single_page() -> None:
    a = article(f"{PUBMED_XML}/fatcat-pubmed_31393839.xml")
    assert a.journal.issn_print == "0022-3875"
    assert a.journal.issn == "0022-3875"
    assert (a.journal.medline_ta, a.journal.nlm_unique_id, a.journal.country) == (
        "J Clin Orthod",
        "0243471",
        "United States",
    )
    assert (a.volume, a.issue, a.pages) == ("53", "6", "325")
    assert a.authors[0].affiliations == ("J Clin Orthod, Greenwood Village, CO.",)


def test_vernacular_title() -> None:
    a = article(f"{UPDATE_FILES}/costosys-pubmedsample18n0001.xml.gz", "1669026")
    assert a.vernacular_title == (
        "Célébration du CL Anniversaire de l'Académie Royal de Médecine de Belgique. "
        "Première partie. Bruxelles, 26-28 septembre 1991."
    )
    assert a.languages == ("fre",)


def test_update_files_gzipped() -> None:
    records = articles(f"{UPDATE_FILES}/costosys-pubmedsample18n0001.xml.gz")
    assert len(records) == 177
    assert records[0].pmid == "973217"
    excerpt = articles(f"{UPDATE_FILES}/jcore-pubmed21n1016_excerpt_original.xml.gz")
    assert [(a.pmid, a.doi) for a in excerpt] == [
        ("31878634", "10.1364/oe.382181"),
        ("31878635", "10.1364/oe.382423"),
        ("31878636", "10.1364/oe.382761"),
    ]


# ------------------------------------------------------------------------------- the hand-written 35350566


SEED_ABSTRACT = (
    "Exosomes are lipid membrane bilayer-encapsulated vesicles secreted by cells into the "
    "extracellular space. They carry abundant inclusions (such as nucleic acids, proteins, and "
    "lipids) that play pivotal roles in intercellular communication. Tumor stem cells are capable of"
    " self-renewal and are crucial for survival, proliferation, drug resistance, metastasis, and "
    "recurrence of tumors. The miRNAs (microRNAs) in exosomes have various functions, such as "
    "participating in inflammatory response, cell migration, proliferation, apoptosis, autophagy, "
    "and epithelial-mesenchymal transition. Tumor stem cells secrete exosomes that act as important "
    "messengers involved in various tumor processes and several studies provide increasing evidence "
    "supporting the importance of these exosomes in tumor recurrence and metastasis. This review "
    "primarily focuses on the production and secretion of exosomes from tumors and tumor stem cells "
    "and their effects on cancer progression. Cancer stem cancer derived exosome play an important "
    "massager in the tumor microenvironment. It also emphasizes on the study of tumor stem cell "
    "exosomes in the light of cancer metastasis and recurrence aiming to provide valuable insights "
    "and novel perspectives, which could be beneficial for developing effective diagnostic and "
    "treatment strategies."
)


def test_hand_written_35350566_carries_every_seed_fact() -> None:
    [a] = list(parse_pubmed(FIXTURES_DIR / "efetch_pubmed_35350566.xml"))
    assert isinstance(a, Article)
    assert (a.pmid, a.pmid_version, a.record_type) == ("35350566", 1, "journal-article")
    assert a.medline_status == "PubMed-not-MEDLINE"
    assert a.title == "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
    assert a.abstract == Abstract(
        (AbstractSection(SEED_ABSTRACT),),
        copyright="Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang.",
    )
    assert [(x.position, x.last_name, x.fore_name, x.initials) for x in a.authors] == [
        (1, "Liu", "Kun", "K"),
        (2, "Gao", "Xin", "X"),
        (3, "Kang", "Baoqiang", "B"),
        (4, "Liu", "Yunpeng", "Y"),
        (5, "Wang", "Dingding", "D"),
        (6, "Wang", "Yi", "Y"),
    ]
    assert a.journal.title == "Frontiers in oncology"
    assert a.journal.iso_abbrev == "Front Oncol"
    assert a.journal.medline_ta == "Front Oncol"
    assert a.journal.issn_electronic == "2234-943X"
    assert a.journal.nlm_unique_id == "101568867"
    assert a.volume == "12"
    assert a.elocation_ids == (ELocationId("pii", "836548"), ELocationId("doi", "10.3389/fonc.2022.836548"))
    assert a.pub_date == PartialDate(year=2022, raw="2022")
    assert a.epub_date == PartialDate(year=2022, month=3, day=8, raw="2022 Mar 8")
    assert a.languages == ("eng",)
    assert a.publication_types == (
        PublicationType("Journal Article", "D016428"),
        PublicationType("Review", "D016454"),
    )
    assert a.ids == (
        ArticleId("pubmed", "35350566"),
        ArticleId("pmc", "PMC8958025"),
        ArticleId("doi", "10.3389/fonc.2022.836548"),
        ArticleId("pii", "836548"),
    )
    assert (a.doi, a.pmcid) == ("10.3389/fonc.2022.836548", "PMC8958025")
    assert a.publication_status == "epublish"
    assert not a.retracted


# ------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1998 Dec-1999 Jan", PartialDate(year=1998, month=12, raw="1998 Dec-1999 Jan")),
        ("2018 May - Jun", PartialDate(year=2018, month=5, raw="2018 May - Jun")),
        ("Summer 2009", PartialDate(year=2009, season="Summer", raw="Summer 2009")),
        ("2000 Spring-Summer", PartialDate(year=2000, season="Spring", raw="2000 Spring-Summer")),
        ("2000 Dec 23-30", PartialDate(year=2000, month=12, day=23, raw="2000 Dec 23-30")),
        ("1999-2000", PartialDate(year=1999, raw="1999-2000")),
        ("2019", PartialDate(year=2019, raw="2019")),
        ("2003 Nov 6-Dec 4", PartialDate(year=2003, month=11, day=6, raw="2003 Nov 6-Dec 4")),
        ("2001 Feb 30-Mar 2", PartialDate(year=2001, month=2, raw="2001 Feb 30-Mar 2")),
        ("1977-1978 Winter", PartialDate(year=1977, raw="1977-1978 Winter")),
        ("  2008\n Jan-Mar ", PartialDate(year=2008, month=1, raw="2008 Jan-Mar")),
        ("Date unknown", PartialDate(raw="Date unknown")),
        ("", PartialDate()),
    ],
)
def test_parse_medline_date(text: str, expected: PartialDate) -> None:
    assert parse_medline_date(text) == expected


def test_pub_date_shapes_in_a_document() -> None:
    records = list(parse_pubmed(FIXTURES_DIR / "efetch_medlinedate_variants.xml"))
    got = {r.title: r.pub_date for r in records if isinstance(r, Article)}
    assert len(records) == 10
    assert got["MedlineDate 1998 Dec-1999 Jan"].iso == "1998-12"
    assert got["MedlineDate 2018 May - Jun"].iso == "2018-05"
    assert got["MedlineDate Summer 2009"] == PartialDate(year=2009, season="Summer", raw="Summer 2009")
    assert got["MedlineDate 2000 Spring-Summer"].season == "Spring"
    assert got["MedlineDate 2000 Dec 23-30"].iso == "2000-12-23"
    assert got["MedlineDate 1999-2000"].iso == "1999"
    assert got["MedlineDate 2019"].iso == "2019"
    structured = [r.pub_date for r in records if isinstance(r, Article) and r.title == "structured PubDate"]
    assert structured == [
        PartialDate(year=2009, season="Summer", raw="2009 Summer"),
        PartialDate(year=2022, month=3, day=8, raw="2022 Mar 8"),  # Month "Mar", Day "8"
        PartialDate(year=2022, month=3, day=8, raw="2022 Mar 8"),  # Month "03", Day "08"
    ]


# Characters that XML 1.0 text can hold (no C0 controls but tab and newline, no surrogates, no U+FFFE/FFFF).
_xml_char = st.characters(
    exclude_categories=("Cs", "Cc", "Cn"), exclude_characters="\ufeff"
) | st.sampled_from(" \n\t")


@given(st.text(alphabet=_xml_char | st.sampled_from("0123456789 -JanDecSummer"), max_size=40))
def test_parse_medline_date_never_fails_and_keeps_the_text(text: str) -> None:
    date = parse_medline_date(text)
    collapsed = " ".join(re.split(r"[ \t\r\n]+", text)).strip(" ")
    assert date.raw == (collapsed or None)
    if date.year is not None:
        assert str(date.year) in text
    if date.day is not None:
        assert date.month is not None


# ------------------------------------------------------------------------------- hand-written edge cases


def test_truncated_document_yields_what_came_before_then_raises_parse_error() -> None:
    data = (FIXTURES_DIR / "efetch_medlinedate_variants.xml").read_bytes()
    cut = data[: data.index(b'<PMID Version="1">90000005</PMID>') + 10]
    got: list[str] = []
    with pytest.raises(ParseError) as caught:
        for record in parse_pubmed(cut):
            assert record.pmid is not None
            got.append(record.pmid)
    assert got == ["90000001", "90000002", "90000003", "90000004"]
    assert str(caught.value).startswith("PubMed XML is not well-formed at line ")
    assert "\n" not in str(caught.value)
    assert not isinstance(caught.value, etree.XMLSyntaxError)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<eSearchResult><Count>0</Count><IdList/></eSearchResult>", id="esearch"),
        pytest.param(b"<html><body><p>Service unavailable</p></body></html>", id="xhtml"),
        pytest.param(
            b"<!DOCTYPE html><html><head><title>Error</title></head><body><br></body></html>", id="html"
        ),
        pytest.param(b"<eFetchResult><ERROR>Empty id list</ERROR></eFetchResult>", id="efetch-error"),
        pytest.param(b"<html>" + wrap(minimal("7")) + b"</html>", id="set-inside-html"),
        pytest.param(b"", id="empty"),
        pytest.param(b"PMID- 12345\nTI  - a MEDLINE text record", id="medline-text"),
    ],
)
def test_documents_that_are_not_pubmed_xml_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        list(parse_pubmed(data))


def test_recorded_esearch_response_is_refused() -> None:
    with pytest.raises(ParseError, match="eSearchResult"):
        list(parse_pubmed(shared_fixture("eutils-esearch/esearch1.xml")))


def test_record_without_pmid_is_skipped() -> None:
    records = list(parse_pubmed(wrap(minimal("1"), minimal(""), minimal("not-a-pmid"), minimal("3"))))
    assert [r.pmid for r in records] == ["1", "3"]


def test_unknown_elements_are_ignored() -> None:
    body = b"<FutureElement><Nested>x</Nested></FutureElement><Language>eng</Language>"
    [a] = list(parse_pubmed(wrap(minimal("5", body, b"<AnotherNewThing/>"))))
    assert isinstance(a, Article)
    assert a.languages == ("eng",)


def test_doi_falls_back_to_a_valid_elocation_id() -> None:
    body = (
        b'<ELocationID EIdType="doi" ValidYN="N">10.9999/WITHDRAWN</ELocationID>'
        b'<ELocationID EIdType="pii" ValidYN="Y">S0001</ELocationID>'
        b'<ELocationID EIdType="doi" ValidYN="Y">10.1234/ABC.Def</ELocationID>'
    )
    data = b'<ArticleIdList><ArticleId IdType="pubmed">5</ArticleId></ArticleIdList>'
    [a] = list(parse_pubmed(wrap(minimal("5", body, data=data))))
    assert isinstance(a, Article)
    assert a.doi == "10.1234/abc.def"
    assert a.elocation_ids[0] == ELocationId("doi", "10.9999/WITHDRAWN", valid=False)


def test_article_id_list_doi_wins_over_elocation_id_and_bad_ids_are_dropped() -> None:
    body = b'<ELocationID EIdType="doi" ValidYN="Y">10.1234/eloc</ELocationID>'
    data = (
        b'<ArticleIdList><ArticleId IdType="doi">not a doi</ArticleId>'
        b'<ArticleId IdType="doi">10.1234/OWN</ArticleId><ArticleId IdType="pmc">PMCxyz</ArticleId>'
        b"</ArticleIdList>"
    )
    [a] = list(parse_pubmed(wrap(minimal("5", body, data=data))))
    assert isinstance(a, Article)
    assert a.doi == "10.1234/own"
    assert a.pmcid is None
    assert a.ids[0] == ArticleId("doi", "not a doi")  # ids keep what the source said


def test_nested_reference_lists_are_flattened_in_document_order() -> None:
    data = (
        b'<ArticleIdList><ArticleId IdType="pubmed">5</ArticleId></ArticleIdList>'
        b"<ReferenceList><Title>References</Title>"
        b"<Reference><Citation>First <i>et al</i>.</Citation><ArticleIdList>"
        b'<ArticleId IdType="doi">10.1000/ONE</ArticleId><ArticleId IdType="pubmed">11</ArticleId>'
        b"</ArticleIdList></Reference>"
        b"<ReferenceList><Title>Further reading</Title>"
        b'<Reference><Citation>Second</Citation><ArticleIdList><ArticleId IdType="pmc">PMC22</ArticleId>'
        b"</ArticleIdList></Reference>"
        b"</ReferenceList>"
        b"<Reference><Citation>Third</Citation></Reference>"
        b"</ReferenceList>"
    )
    [a] = list(parse_pubmed(wrap(minimal("5", data=data))))
    assert isinstance(a, Article)
    assert a.references == (
        Reference("First et al.", "11", "10.1000/one"),
        Reference("Second", pmcid="PMC22"),
        Reference("Third"),
    )
    assert a.ids == (ArticleId("pubmed", "5"),)
    assert a.doi is None and a.pmcid is None


def test_start_and_end_page_when_there_is_no_medline_pgn() -> None:
    body = b"<Pagination><StartPage>e101</StartPage><EndPage>e109</EndPage></Pagination>"
    [a] = list(parse_pubmed(wrap(minimal("5", body))))
    assert isinstance(a, Article)
    assert a.pages == "e101-e109"


def test_author_valid_flag_and_old_style_affiliation() -> None:
    body = (
        b'<AuthorList><Author ValidYN="N"><LastName>Gone</LastName><Affiliation>Old style.</Affiliation>'
        b'</Author><Author><LastName>Kept</LastName><Identifier Source="ORCID">0000-0002-1825-0098'
        b"</Identifier></Author></AuthorList>"
    )
    [a] = list(parse_pubmed(wrap(minimal("5", body))))
    assert isinstance(a, Article)
    assert a.authors == (
        Author(1, last_name="Gone", affiliations=("Old style.",), valid=False),
        Author(2, last_name="Kept"),  # the check digit is wrong, so no ORCID is claimed
    )


def test_an_author_list_of_editors_in_a_journal_article_is_not_the_authors() -> None:
    # issue 16: outside a book, an AuthorList Type="editors" (conference proceedings, supplements) names
    # editors; only an untyped or Type="authors" list is the article's authors, in whichever order they come.
    editors = b'<AuthorList Type="editors"><Author><LastName>Editor</LastName></Author></AuthorList>'
    authors = b'<AuthorList Type="authors"><Author><LastName>Writer</LastName></Author></AuthorList>'
    untyped = b"<AuthorList><Author><LastName>Plain</LastName></Author></AuthorList>"
    [only_editors, editors_last, editors_first] = list(
        parse_pubmed(
            wrap(minimal("5", editors), minimal("6", authors + editors), minimal("7", editors + untyped))
        )
    )
    assert isinstance(only_editors, Article) and isinstance(editors_last, Article)
    assert isinstance(editors_first, Article)
    assert only_editors.authors == ()
    assert [x.last_name for x in editors_last.authors] == ["Writer"]
    assert [x.last_name for x in editors_first.authors] == ["Plain"]


def test_book_authors_come_from_the_book_when_the_chapter_has_none() -> None:
    book = (
        b'<PubmedBookArticle><BookDocument><PMID Version="2">77</PMID><Book>'
        b"<Publisher><PublisherName>P</PublisherName></Publisher><BookTitle>Whole Book</BookTitle>"
        b"<PubDate><Year>2001</Year><Month>02</Month></PubDate>"
        b'<AuthorList Type="editors"><Author><LastName>Editor</LastName></Author></AuthorList>'
        b'<AuthorList Type="authors"><Author><LastName>Writer</LastName></Author></AuthorList>'
        b"</Book></BookDocument><PubmedBookData><PublicationStatus>ppublish</PublicationStatus>"
        b"</PubmedBookData></PubmedBookArticle>"
    )
    [a] = list(parse_pubmed(b"<PubmedBookArticleSet>" + book + b"</PubmedBookArticleSet>"))
    assert isinstance(a, Article)
    assert (a.pmid, a.pmid_version, a.record_type) == ("77", 2, "book-article")
    assert a.title == a.book_title == "Whole Book"
    assert [x.last_name for x in a.authors] == ["Writer"]
    assert a.pub_date == PartialDate(year=2001, month=2, raw="2001 Feb")


def test_delete_citation_keeps_versions_next_to_articles() -> None:
    data = wrap(
        minimal("10"),
        b'<DeleteCitation><PMID Version="1">11</PMID><PMID Version="2">12</PMID></DeleteCitation>',
    )
    records = list(parse_pubmed(data))
    assert [type(r).__name__ for r in records] == ["Article", "DeletedCitation", "DeletedCitation"]
    assert records[1:] == [DeletedCitation("11", 1), DeletedCitation("12", 2)]


def test_every_kind_of_source(tmp_path: Path) -> None:
    data = (FIXTURES_DIR / "efetch_pubmed_35350566.xml").read_bytes()
    expected = list(parse_pubmed(data))
    plain = tmp_path / "one.xml"
    plain.write_bytes(data)
    gz = tmp_path / "one.xml.gz"
    gz.write_bytes(gzip.compress(data))
    no_suffix = tmp_path / "gzip-without-suffix"
    no_suffix.write_bytes(gzip.compress(data))
    assert list(parse_pubmed(plain)) == expected
    assert list(parse_pubmed(str(plain))) == expected
    assert list(parse_pubmed(gz)) == expected
    assert list(parse_pubmed(no_suffix)) == expected  # gzip is recognised by its magic bytes
    assert list(parse_pubmed(gzip.compress(data))) == expected
    assert list(parse_pubmed(io.BytesIO(data))) == expected
    assert list(parse_pubmed(io.BytesIO(gzip.compress(data)))) == expected
    with plain.open("rb") as handle:
        assert list(parse_pubmed(handle)) == expected
    # Decoded text: its declaration no longer describes the bytes, and a non-UTF-8 one must not mislead.
    text = data.decode("utf-8").replace(
        '<?xml version="1.0" ?>', '<?xml version="1.0" encoding="ISO-8859-1"?>'
    )
    assert list(parse_pubmed(text)) == expected


def test_truncated_gzip_raises_parse_error() -> None:
    data = gzip.compress((FIXTURES_DIR / "efetch_pubmed_35350566.xml").read_bytes())
    with pytest.raises(ParseError, match="gzip"):
        list(parse_pubmed(data[: len(data) // 2]))


def test_handled_records_are_dropped_from_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: when a record is handed over, every record before it is gone from the tree.

    (lxml reads ahead by a buffer, so records not yet handed over may already be in the tree.)
    """
    positions: list[int] = []
    real_iterparse = iterparse_safe

    def spy(*args: Any, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        for event, elem in real_iterparse(*args, **kwargs):
            parent = elem.getparent()
            if parent is not None:
                positions.append(parent.index(elem))
                assert all(len(older) == 0 for older in parent[: parent.index(elem)])  # cleared
            yield event, elem

    monkeypatch.setattr("harvester.sources.pubmed_xml.iterparse_safe", spy)
    records = list(parse_pubmed(wrap(*(minimal(str(n)) for n in range(1, 2001)))))
    assert len(records) == 2000
    assert len(positions) == 2000
    assert max(positions) <= 1  # only the previous, cleared record is left before the current one


# ------------------------------------------------------------------------------- properties

_INLINE_TAGS = ("i", "b", "u", "sup", "sub")
_xml_text = st.text(alphabet=_xml_char, max_size=12)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@given(st.lists(st.tuples(_xml_text, st.sampled_from((None, *_INLINE_TAGS))), max_size=8))
def test_text_with_inline_tags_is_never_truncated(segments: list[tuple[str, str | None]]) -> None:
    markup = "".join(f"<{tag}>{_escape(text)}</{tag}>" if tag else _escape(text) for text, tag in segments)
    plain = "".join(text for text, _ in segments)
    data = wrap(minimal("5", f"<Abstract><AbstractText>{markup}</AbstractText></Abstract>".encode()))
    [a] = list(parse_pubmed(data))
    assert isinstance(a, Article)
    expected = re.sub(r"[ \t\r\n]+", " ", plain).strip(" ")
    got = a.abstract.sections[0].text if a.abstract else ""
    assert got == expected


@given(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"(doi:|https://doi.org/)?10\.\d{4,6}/[!-~]{1,12}", fullmatch=True),
    )
)
def test_identifier_shortcuts_agree_with_harvester_ids(value: str) -> None:
    """parse_pubmed's shortcuts for already-canonical identifiers give what harvester.core.ids gives."""
    assert xmltext.doi_or_none(value) == doi_or_none(value)
    assert pubmed_xml._pmcid_or_none(value) == pmcid_or_none(value)
    assert pubmed_xml._pmcid_or_none("PMC" + value) == pmcid_or_none("PMC" + value)
    assert xmltext.pmid_or_none(value) == _pmid_via_ids(value)


def _pmid_via_ids(value: str) -> str | None:
    try:
        return normalize_pmid(value) if value else None
    except InvalidIdentifierError:
        return None


@given(st.text(alphabet=_xml_char, max_size=30), st.sampled_from(["", "<i>x</i>"]))
def test_text_collapses_exactly_the_xml_whitespace(text: str, tail: str) -> None:
    elem = parse_document(f"<t>{_escape(text)}{tail}</t>".encode())
    expected = re.sub(r"[ \t\r\n]+", " ", text + ("x" if tail else "")).strip(" ")
    assert pubmed_xml._text(elem) == (expected or None)
