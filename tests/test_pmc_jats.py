"""parse_pmc_articles against recorded PMC answers ($HARVEST_FIXTURES) and small hand-written documents."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from lxml import etree

from enrich.pmc_jats import parse_pmc_articles
from enrich.records import ContributorName, Funder, License, PmcFront
from harvester.core.errors import ParseError
from harvester.core.ids import doi_or_none
from harvester.core.records import PartialDate
from harvester.core.xmlsafe import parse_document
from harvester.core.xmltext import doi_or_none as _doi_or_none
from tests.conftest import FIXTURES_DIR, HARVEST_FIXTURES, shared_fixture

PMC_JATS = "eutils-pmc-jats"
SEED_FIXTURE = FIXTURES_DIR / "efetch_pmc_PMC8958025.xml"
HAND_WRITTEN = (
    "efetch_pmc_PMC8958025.xml",
    "efetch_pmc_contribs_orcid_affs.xml",
    "efetch_pmc_funding_award_groups.xml",
    "efetch_pmc_jats13_date_types.xml",
    "efetch_pmc_no_pmid.xml",
    "efetch_pmc_three_articles.xml",
)

# The PMC id each recorded file holds (from MANIFEST.md, checked against the files).
RECORDED_PMCIDS = {
    "biocommons-test_eutils_xmlfacades_pubmedcentralarticle_PMC3299399.xml": "PMC3299399",
    "efetch_pmc.xml": "PMC8435807",
    "eutilsorg-efetch-pmc-3159421.xml": "PMC3159421",
    "eutilsorg-efetch-pmc-3531190.xml": "PMC3531190",
    "pubmedparser-1472-6831-8-11.nxml": "PMC2329613",
    "pubmedparser-pntd.0002065.nxml": "PMC3585041",
}


def recorded_files() -> list[object]:
    """One pytest.param per *.xml / *.nxml of eutils-pmc-jats (skipped when unset, failing when empty)."""
    root = os.environ.get(HARVEST_FIXTURES)
    if not root:
        reason = f"{HARVEST_FIXTURES} is not set: point it at the recorded NCBI responses to run this test"
        return [pytest.param(None, id="unset", marks=pytest.mark.skip(reason=reason))]
    base = Path(root) / PMC_JATS
    found = sorted(p.name for p in base.glob("*") if p.suffix in (".xml", ".nxml"))
    if not found:
        return [pytest.param(f"{PMC_JATS}/*.xml", id="none-found")]
    return [pytest.param(f"{PMC_JATS}/{name}", id=name) for name in found]


def recorded(name: str, **kwargs: bool) -> PmcFront:
    [front] = list(parse_pmc_articles(shared_fixture(f"{PMC_JATS}/{name}"), **kwargs))
    return front


def local(name: str) -> list[PmcFront]:
    return list(parse_pmc_articles(FIXTURES_DIR / name))


def article_element(meta: str, *, before_front: str = "", pmc_id: bool = True) -> bytes:
    """One ``article``; ``meta`` goes into article-meta, after a PMC id of 9000099 unless pmc_id is false."""
    pmc = '<article-id pub-id-type="pmc">9000099</article-id>' if pmc_id else ""
    return (
        '<article xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mml="http://www.w3.org/1998/Math/MathML">'
        f"{before_front}<front><article-meta>{pmc}{meta}</article-meta></front>"
        "<body><p>Body.</p></body></article>"
    ).encode()


def article_set(*articles: bytes) -> bytes:
    return b"<pmc-articleset>" + b"".join(articles) + b"</pmc-articleset>"


def article(meta: str, *, before_front: str = "") -> bytes:
    """A set of one article (see :func:`article_element`)."""
    return article_set(article_element(meta, before_front=before_front))


def only(data: bytes) -> PmcFront:
    [front] = list(parse_pmc_articles(data))
    return front


# ------------------------------------------------------------------------------- recorded answers


def test_every_recorded_file_is_listed_here() -> None:
    root = os.environ.get(HARVEST_FIXTURES)
    if not root:
        pytest.skip(
            f"{HARVEST_FIXTURES} is not set: point it at the recorded NCBI responses to run this test"
        )
    found = {p.name for p in (Path(root) / PMC_JATS).glob("*") if p.suffix in (".xml", ".nxml")}
    assert found == set(RECORDED_PMCIDS)


@pytest.mark.parametrize("relpath", recorded_files())
def test_every_recorded_file_parses_and_round_trips_through_raw_xml(relpath: str) -> None:
    path = shared_fixture(relpath)
    [front] = list(parse_pmc_articles(path, keep_raw=True))
    assert front.pmcid == RECORDED_PMCIDS[path.name]
    assert front.pmid is not None and front.doi is not None and front.doi == front.doi.lower()
    assert front.title and front.journal_title and front.article_type
    assert front.subjects, "every recorded article has a subject heading"
    assert front.contributors or front.article_type == "correction"
    assert front.raw_xml is not None
    assert b"<body" not in front.raw_xml and b"<back" not in front.raw_xml
    assert len(front.raw_xml) < len(path.read_bytes())
    assert list(parse_pmc_articles(front.raw_xml)) == [front]


def test_frontiers_review_pmc3299399() -> None:
    front = recorded("biocommons-test_eutils_xmlfacades_pubmedcentralarticle_PMC3299399.xml")
    assert (front.pmcid, front.pmid, front.doi) == ("PMC3299399", "22416237", "10.3389/fpsyt.2012.00018")
    assert front.article_type == "review-article"
    assert front.title == "The Effects of Psychosis Risk Variants on Brain Connectivity: A Review"
    assert (front.journal_title, front.publisher) == (
        "Frontiers in Psychiatry",
        "Frontiers Research Foundation",
    )
    assert front.issns == ("1664-0640",)
    # subj-group-type="heading" with a nested, untyped subj-group: both subjects, outer first.
    assert front.subjects == ("Psychiatry", "Review Article")
    assert front.keywords == (
        "schizophrenia",
        "functional connectivity",
        "structural connectivity",
        "genotype",
        "effect size",
    )
    assert front.licenses == (
        License(
            url="http://www.frontiersin.org/licenseagreement",
            license_type="open-access",
            text="This is an open-access article distributed under the terms of the Creative Commons "
            "Attribution Non Commercial License, which permits non-commercial use, distribution, and "
            "reproduction in other forums, provided the original authors and source are credited.",
        ),
    )
    assert front.copyright_statement == "Copyright © 2012 Mothersill, Kelly, Rose and Donohoe."
    assert front.copyright_year == 2012
    assert front.epub_date == PartialDate(year=2012, month=3, day=9, raw="2012 Mar 9")
    assert front.collection_date == PartialDate(year=2012, raw="2012")
    assert (front.ppub_date, front.pmc_release_date) == (None, None)
    assert (front.volume, front.issue, front.pages, front.elocation_id) == ("3", None, None, "18")
    assert (front.funders, front.funding_statement) == ((), None)
    assert front.open_access is True and front.full_text_withheld is False
    # Affiliations by xref; the leading <sup>1</sup> label is dropped, institution and country joined.
    dublin = (
        "Neuropsychiatric Genetics Group, Department of Psychiatry, Trinity College Dublin, Dublin, Ireland",
        "Trinity College Institute for Neuroscience, Trinity College Dublin, Dublin, Ireland",
    )
    assert front.contributors == (
        ContributorName(1, "Mothersill", "Omar", affiliations=dublin),
        ContributorName(2, "Kelly", "Sinead", affiliations=dublin),
        ContributorName(3, "Rose", "Emma Jane", affiliations=dublin),
        ContributorName(4, "Donohoe", "Gary", affiliations=dublin),
    )


def test_correction_with_ali_license_ref_pmc8435807() -> None:
    front = recorded("efetch_pmc.xml")
    assert (front.pmcid, front.pmid, front.doi) == ("PMC8435807", "34527728", "10.1183/23120541.50193-2021")
    assert front.article_type == "correction"
    assert front.subjects == ("Author Correction",)
    assert front.title == (
        "“Lung diffusing capacity for nitric oxide measured by two commercial devices: a randomised "
        "crossover comparison in healthy adults”. Thomas Radtke, Quintin de Groot, Sarah R. Haile, "
        "Marion Maggi, Connie C.W. Hsia and Holger Dressel. ERJ Open Res 2021; 7: 00193-2021."
    )
    assert (front.journal_title, front.publisher) == ("ERJ Open Research", "European Respiratory Society")
    assert front.issns == ("2312-0541",)
    # No xlink:href and no license-type: the URL is the ali:license_ref.
    assert front.licenses == (
        License(
            url="https://creativecommons.org/licenses/by-nc/4.0/",
            text="This version is distributed under the terms of the Creative Commons Attribution "
            "Non-Commercial Licence 4.0. For commercial reproduction rights and permissions contact "
            "permissions@ersnet.org",
        ),
    )
    assert front.copyright_statement == "Copyright ©The authors 2021"
    assert front.copyright_year == 2021
    assert front.collection_date == PartialDate(year=2021, month=7, raw="2021 Jul")
    assert front.epub_date == PartialDate(year=2021, month=9, day=13, raw="2021 Sep 13")
    assert front.pmc_release_date == front.epub_date
    assert (front.volume, front.issue, front.elocation_id) == ("7", "3", "50193-2021")
    assert front.contributors == ()
    assert front.open_access is True


def test_full_text_withheld_author_manuscript_pmc3159421() -> None:
    front = recorded("eutilsorg-efetch-pmc-3159421.xml")
    assert front.full_text_withheld is True
    assert front.open_access is False  # <?properties manuscript?>: marked by PMC, not open access
    assert (front.pmcid, front.pmid) == ("PMC3159421", "21866248")
    assert front.doi == "10.4242/balisagevol7.maloney01"  # "BalisageVol7.Maloney01" in the file
    assert front.article_type == "research-article"
    assert front.subjects == ("Article",)
    assert front.journal_title == "Balisage series on markup technologies"
    assert (front.publisher, front.issns) == (None, ("1947-2609",))
    assert (front.licenses, front.copyright_statement, front.copyright_year) == ((), None, None)
    assert front.ppub_date == PartialDate(year=2011, raw="2011")
    assert front.pmc_release_date == PartialDate(year=2011, month=8, day=22, raw="2011 Aug 22")
    assert front.epub_date is None  # pub-type="nihms-submitted" is not an epub date
    assert (front.volume, front.elocation_id) == ("7", "BalisageVol7.Maloney01")
    assert front.funders == (Funder("NIH Intramural Employee : PHS", None, ("NIH0014214169 || PHS",)),)
    assert front.contributors == (ContributorName(1, "Maloney", "Chris"),)


def test_bare_article_root_pmc3531190() -> None:
    front = recorded("eutilsorg-efetch-pmc-3531190.xml")
    assert (front.pmcid, front.pmid, front.doi) == ("PMC3531190", "23193287", "10.1093/nar/gks1195")
    assert (front.title, front.article_type, front.subjects) == ("GenBank", "research-article", ("Articles",))
    assert front.issns == ("0305-1048", "1362-4962")
    [licence] = front.licenses
    assert licence.url == "http://creativecommons.org/licenses/by-nc/3.0"
    assert licence.license_type == "creative-commons"
    # The <!--CREATIVE COMMONS--> comment inside license-p is not text; the ext-link's text is.
    assert licence.text is not None
    assert licence.text.startswith(
        "This is an Open Access article distributed under the terms of the Creative Commons Attribution "
        "License (http://creativecommons.org/licenses/by-nc/3.0/), which permits non-commercial reuse"
    )
    assert licence.text.endswith("please contact journals.permissions@oup.com.")
    assert front.copyright_statement == "Published by Oxford University Press 2012."
    assert front.copyright_year == 2012
    assert front.collection_date == front.ppub_date == PartialDate(year=2013, month=1, raw="2013 Jan")
    assert front.epub_date == front.pmc_release_date == PartialDate(2012, 11, 26, raw="2012 Nov 26")
    assert (front.volume, front.issue, front.pages) == ("41", "D1", "D36-D42")
    # One aff without an id and no xrefs: it is every author's.
    assert [c.family for c in front.contributors] == [
        "Benson",
        "Cavanaugh",
        "Clark",
        "Karsch-Mizrachi",
        "Lipman",
        "Ostell",
        "Sayers",
    ]
    ncbi = (
        "National Center for Biotechnology Information, National Library of Medicine, National Institutes "
        "of Health, Building 38A, 8600 Rockville Pike, Bethesda, MD 20894, USA"
    )
    assert {c.affiliations for c in front.contributors} == {(ncbi,)}
    assert front.open_access is True


def test_nlm_23_article_pmc2329613() -> None:
    front = recorded("pubmedparser-1472-6831-8-11.nxml")
    assert (front.pmcid, front.pmid, front.doi) == ("PMC2329613", "18405359", "10.1186/1472-6831-8-11")
    assert front.journal_title == "BMC Oral Health"  # journal-title straight under journal-meta
    assert (front.publisher, front.issns, front.subjects) == (
        "BioMed Central",
        ("1472-6831",),
        ("Research Article",),
    )
    # License text in <p> (NLM 2.3); the empty ext-link shows its URL; the RDF comment is ignored.
    assert front.licenses == (
        License(
            url="http://creativecommons.org/licenses/by/2.0",
            license_type="open-access",
            text="This is an Open Access article distributed under the terms of the Creative Commons "
            "Attribution License (http://creativecommons.org/licenses/by/2.0), which permits unrestricted "
            "use, distribution, and reproduction in any medium, provided the original work is properly "
            "cited.",
        ),
    )
    assert front.copyright_statement == "Copyright © 2008 van der Meulen et al; licensee BioMed Central Ltd."
    assert front.copyright_year == 2008
    assert front.epub_date == PartialDate(year=2008, month=4, day=11, raw="2008 Apr 11")
    assert front.collection_date == PartialDate(year=2008, raw="2008")
    assert (front.volume, front.pages) == ("8", "11")  # fpage 11, lpage 11
    first, second = front.contributors[:2]
    assert (first.family, first.given) == ("van der Meulen", "Marylee J")
    assert first.affiliations == (
        "Department of Oral Function, Academic Centre for Dentistry Amsterdam (ACTA), Louwesweg 1, "
        "1066 EA, Amsterdam, The Netherlands",
        "Centre for Special Dental Care (SBT), Amsterdam, The Netherlands",
    )
    assert second.affiliations == (
        "Department of Prosthodontics and Material Science, University of Leipzig, Germany",
    )
    assert front.open_access is True


def test_plos_nested_disciplines_and_funding_statement_pmc3585041() -> None:
    front = recorded("pubmedparser-pntd.0002065.nxml")
    assert (front.pmcid, front.pmid, front.doi) == ("PMC3585041", "23469300", "10.1371/journal.pntd.0002065")
    assert front.title == (
        "Serological Evidence of Rift Valley Fever Virus Circulation in Sheep and Goats in Zambézia "
        "Province, Mozambique"
    )
    # The heading group, then the Discipline-v2 group with its nested groups, in document order.
    assert front.subjects == (
        "Research Article",
        "Veterinary Science",
        "Animal Types",
        "Small Animals",
        "Veterinary Diseases",
        "Veterinary Virology",
        "Zoonotic Diseases",
        "Veterinary Epidemiology",
    )
    assert front.licenses == (
        License(
            text="This is an open-access article distributed under the terms of the Creative Commons "
            "Attribution License, which permits unrestricted use, distribution, and reproduction in any "
            "medium, provided the original author and source are credited."
        ),
    )
    assert (front.copyright_statement, front.copyright_year) == (None, 2013)
    assert front.funders == ()
    assert front.funding_statement is not None
    assert front.funding_statement.startswith("The work was supported by the SIDA/SAREC project UEM, ")
    assert (front.volume, front.issue, front.elocation_id) == ("7", "2", "e2065")
    assert front.issns == ("1935-2727", "1935-2735")
    # Six authors; the editor of the second contrib-group is not one.
    assert [c.family for c in front.contributors] == [
        "Fafetine",
        "Neves",
        "Thompson",
        "Paweska",
        "Rutten",
        "Coetzer",
    ]
    assert front.contributors[0].given == "José"
    assert front.contributors[1].affiliations == (
        "Veterinary Faculty, Eduardo Mondlane University, Maputo, Mozambique",
        "Biotechnology Centre, Eduardo Mondlane University, Maputo, Mozambique",
    )


# ------------------------------------------------------------------------------- the seed article


SEED_ABSTRACT = (
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
    "exosomes in the light of cancer metastasis and recurrence aiming to provide valuable insights and "
    "novel perspectives, which could be beneficial for developing effective diagnostic and treatment "
    "strategies."
)
SEED_LICENSE_TEXT = (
    "This is an open-access article distributed under the terms of the Creative Commons Attribution "
    "License (CC BY). The use, distribution or reproduction in other forums is permitted, provided the "
    "original author(s) and the copyright owner(s) are credited and that the original publication in this "
    "journal is cited, in accordance with accepted academic practice. No use, distribution or reproduction "
    "is permitted which does not comply with these terms."
)


def test_hand_written_pmc8958025_carries_every_seed_fact() -> None:
    [front] = local("efetch_pmc_PMC8958025.xml")
    assert front == PmcFront(
        pmcid="PMC8958025",
        pmid="35350566",
        doi="10.3389/fonc.2022.836548",
        article_type="review-article",
        title="The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis",
        journal_title="Frontiers in Oncology",
        publisher="Frontiers Media S.A.",
        issns=("2234-943X",),
        subjects=("Oncology",),
        licenses=(
            License(
                url="https://creativecommons.org/licenses/by/4.0/",
                license_type="open-access",
                text=SEED_LICENSE_TEXT,
            ),
        ),
        copyright_statement="Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang",
        copyright_year=2022,
        epub_date=PartialDate(year=2022, month=3, day=8, raw="2022 Mar 8"),
        collection_date=PartialDate(year=2022, raw="2022"),
        pmc_release_date=PartialDate(year=2022, month=3, day=28, raw="2022 Mar 28"),
        volume="12",
        elocation_id="836548",
        contributors=(
            ContributorName(1, "Liu", "Kun"),
            ContributorName(2, "Gao", "Xin"),
            ContributorName(3, "Kang", "Baoqiang"),
            ContributorName(4, "Liu", "Yunpeng"),
            ContributorName(5, "Wang", "Dingding"),
            ContributorName(6, "Wang", "Yi"),
        ),
        open_access=True,
    )
    assert front.epub_date is not None and front.epub_date.iso == "2022-03-08"
    # PmcFront carries no abstract and no copyright-holder: check that the fixture holds the seed's text.
    root = parse_document(SEED_FIXTURE.read_bytes())
    assert root.findtext(".//abstract/p") == SEED_ABSTRACT
    assert root.findtext(".//copyright-holder") == "Liu, Gao, Kang, Liu, Wang and Wang"
    found = root.find("article")
    assert found is not None and found.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert root.findtext(".//journal-id[@journal-id-type='nlm-ta']") == "Front Oncol"


# ------------------------------------------------------------------------------- hand-written cases


def test_article_without_pmid() -> None:
    [front] = local("efetch_pmc_no_pmid.xml")
    assert (front.pmcid, front.pmid) == ("PMC9000001", None)
    assert front.doi == "10.5555/nopmid.2024.001"
    assert (front.volume, front.pages) == ("3", "1-9")
    assert front.open_access is True


def test_several_articles_keep_their_order() -> None:
    fronts = local("efetch_pmc_three_articles.xml")
    assert [(f.pmcid, f.pmid, f.article_type, f.title) for f in fronts] == [
        ("PMC9000013", "90000013", "research-article", "First in the set"),
        ("PMC9000011", "90000011", "editorial", "Second in the set"),
        ("PMC9000012", "90000012", "letter", "Third in the set"),
    ]
    # The processing instruction of the first article is its own, not its neighbours'.
    assert [f.open_access for f in fronts] == [True, None, None]


def test_jats_12_date_types_and_pub_history_release() -> None:
    [front] = local("efetch_pmc_jats13_date_types.xml")
    assert (front.pmcid, front.pmid) == ("PMC9000021", "90000021")  # pub-id-type="pmcid"
    assert front.epub_date == PartialDate(year=2024, month=2, day=5, raw="2024 Feb 5")
    assert front.ppub_date == PartialDate(year=2024, season="Spring", raw="2024 Spring")
    assert front.collection_date == PartialDate(year=2024, month=2, raw="2024 Feb")
    assert front.pmc_release_date == PartialDate(year=2024, month=2, day=6, raw="2024 Feb 6")
    assert (front.volume, front.issue, front.pages) == ("5", "1", "101-104, 120")


def test_funders_from_award_groups() -> None:
    [front] = local("efetch_pmc_funding_award_groups.xml")
    assert front.funders == (
        Funder(
            "National Natural Science Foundation of China",
            "10.13039/501100001809",
            ("81900001", "82000002", "32100003"),
        ),
        Funder("National Institutes of Health", "10.13039/100000002", ("R01 CA000001",)),
        Funder(None, None, ("EX-2024-04",)),
        Funder("The Example Charitable Trust", None, ()),
    )
    assert front.funding_statement == (
        "This work was supported by the National Natural Science Foundation of China (81900001, 82000002, "
        "32100003) and the National Institutes of Health (R01 CA000001)."
    )


def test_funder_ids_in_named_content_or_on_the_funding_source() -> None:
    meta = (
        "<funding-group><award-group><funding-source>"
        '<named-content content-type="funder-name">European Commission</named-content>'
        '<named-content content-type="funder-id">http://dx.doi.org/10.13039/501100000780</named-content>'
        "</funding-source><award-id>  000001 </award-id></award-group>"
        '<award-group><funding-source xlink:href="https://doi.org/10.13039/100000002">NIH</funding-source>'
        "</award-group><award-group><funding-source><institution-wrap>"
        '<institution-id institution-id-type="ror">'
        "https://ror.org/00example</institution-id><institution>Example Foundation</institution>"
        "</institution-wrap></funding-source></award-group></funding-group>"
    )
    assert only(article(meta)).funders == (
        Funder("European Commission", "10.13039/501100000780", ("000001",)),
        Funder("NIH", "10.13039/100000002"),
        Funder("Example Foundation"),  # a ROR id is not a funder DOI
    )


def test_contributors_orcids_names_and_affiliations() -> None:
    [front] = local("efetch_pmc_contribs_orcid_affs.xml")
    example_university = "Department of Examples, Example University, Springfield, Exampleland"
    assert front.contributors == (
        ContributorName(
            1,
            "Carberry",
            "Josiah",
            "Jr",
            orcid="0000-0002-1825-0097",
            affiliations=(example_university, "Institute of Tests, Testland"),
        ),
        # A wrong check digit drops the ORCID; the English name of name-alternatives is the one kept.
        ContributorName(2, "Wang", "Yi", affiliations=("Institute of Tests, Testland",)),
        # The consortium's own member list and its footnote marker are not part of its name.
        ContributorName(3, name="The Example Consortium"),
        ContributorName(4, "Haak", "Laurel L.", affiliations=("Own Institute, Own Town, Ownland",)),
        ContributorName(5, "Untyped", "Una", affiliations=(example_university,)),
    )


def test_title_markup_is_flattened() -> None:
    title = (
        "<title-group><article-title>Effect of <italic>TP53</italic> on Ca<sup>2+</sup> and "
        "CO<sub>2</sub>: <inline-formula><mml:math><mml:msub><mml:mi>V</mml:mi><mml:mrow>"
        "<mml:mi>O</mml:mi><mml:mn>2</mml:mn></mml:mrow></mml:msub></mml:math></inline-formula>max"
        '<xref ref-type="fn" rid="fn1">*</xref>\n      in   <bold>mice</bold><break/>and rats'
        "</article-title></title-group>"
    )
    assert only(article(title)).title == "Effect of TP53 on Ca2+ and CO2: VO2max in mice and rats"


def test_formula_alternatives_are_read_once() -> None:
    title = (
        "<title-group><article-title>Score <inline-formula><alternatives><tex-math>x^2</tex-math>"
        "<mml:math><mml:msup><mml:mi>x</mml:mi><mml:mn>2</mml:mn></mml:msup></mml:math>"
        '<inline-graphic xlink:href="x.gif"/></alternatives></inline-formula> rises</article-title>'
        "</title-group>"
    )
    assert only(article(title)).title == "Score x2 rises"


def test_keywords_subjects_and_repeats() -> None:
    meta = (
        '<article-categories><subj-group subj-group-type="heading"><subject>Research</subject></subj-group>'
        '<subj-group subj-group-type="Discipline"><subject>Oncology</subject><subject>Research</subject>'
        "</subj-group></article-categories>"
        '<kwd-group kwd-group-type="author"><title>Keywords</title><kwd>exosome</kwd>'
        "<kwd><italic>TP53</italic>  mutation</kwd></kwd-group>"
        '<kwd-group xml:lang="es"><kwd>exosoma</kwd><kwd>exosome</kwd></kwd-group>'
    )
    front = only(article(meta))
    assert front.subjects == ("Research", "Oncology")
    assert front.keywords == ("exosome", "TP53 mutation", "exosoma")


def test_two_licences_and_ali_start_date() -> None:
    meta = (
        '<permissions xmlns:ali="http://www.niso.org/schemas/ali/1.0/">'
        "<copyright-statement>© The Authors</copyright-statement><copyright-year>c. 2021 </copyright-year>"
        '<license license-type="vor" xlink:href="https://example.org/old">'
        '<ali:license_ref start_date="2021-06-01">https://creativecommons.org/licenses/by/4.0/</ali:license_ref>'
        "<license-p>First paragraph.</license-p><license-p>Second <ext-link ext-link-type='uri' "
        "xlink:href='https://creativecommons.org/licenses/by/4.0/'>link</ext-link>.</license-p></license>"
        '<license license-type="tdm"><license-p/></license></permissions>'
    )
    front = only(article(meta))
    assert front.licenses == (
        License(
            "https://creativecommons.org/licenses/by/4.0/",
            "vor",
            "First paragraph. Second link.",
            PartialDate(year=2021, month=6, day=1, raw="2021 Jun 1"),
        ),
        License(license_type="tdm"),
    )
    assert (front.copyright_statement, front.copyright_year) == ("© The Authors", 2021)


@pytest.mark.parametrize(
    ("pub_date", "slot"),
    [
        ('<pub-date pub-type="ppub">', "ppub_date"),
        ('<pub-date pub-type="epub-ppub">', "both"),
        ('<pub-date date-type="pub">', "ppub_date"),
        ("<pub-date>", "ppub_date"),
        ('<pub-date publication-format="electronic">', "epub_date"),
        ('<pub-date date-type="pub" publication-format="print">', "ppub_date"),
        ('<pub-date date-type="collection" publication-format="print">', "collection_date"),
        ('<pub-date date-type="pmc-release">', "pmc_release_date"),
        ('<pub-date pub-type="ecorrected">', None),
        ('<pub-date date-type="preprint" publication-format="electronic">', None),
    ],
)
def test_pub_date_kinds(pub_date: str, slot: str | None) -> None:
    front = only(article(f"{pub_date}<day>31</day><month>12</month><year>2023</year></pub-date>"))
    date = PartialDate(year=2023, month=12, day=31, raw="2023 Dec 31")
    slots = {"epub_date", "ppub_date", "collection_date", "pmc_release_date"}
    expected = {"epub_date", "ppub_date"} if slot == "both" else {slot} if slot else set()
    assert {name for name in slots if getattr(front, name) == date} == expected
    assert {name for name in slots if getattr(front, name) is None} == slots - expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (
            "<year>2020</year><month>02</month><day>30</day>",
            PartialDate(year=2020, month=2, raw="2020 Feb 30"),
        ),
        ("<year>2020</year><month>02</month><day>29</day>", PartialDate(2020, 2, 29, raw="2020 Feb 29")),
        ("<year>2020</year><month>13</month>", PartialDate(year=2020, raw="2020 13")),
        ("<year>2020</year><month>March</month>", PartialDate(year=2020, month=3, raw="2020 Mar")),
        ("<year>20xx</year>", PartialDate(raw="20xx")),
        (
            "<season>Winter</season><year>1999</year>",
            PartialDate(year=1999, season="Winter", raw="1999 Winter"),
        ),
    ],
)
def test_date_parts(parts: str, expected: PartialDate) -> None:
    assert only(article(f'<pub-date pub-type="epub">{parts}</pub-date>')).epub_date == expected


def test_iso_8601_attribute_when_there_are_no_parts_and_empty_dates_are_none() -> None:
    meta = (
        '<pub-date pub-type="epub" iso-8601-date="2024-05-06"/>'
        '<pub-date pub-type="ppub"/>'
        '<pub-date pub-type="collection"><year>  </year></pub-date>'
    )
    front = only(article(meta))
    assert front.epub_date == PartialDate(year=2024, month=5, day=6, raw="2024 May 6")
    assert (front.ppub_date, front.collection_date) == (None, None)


def test_first_date_of_a_kind_and_first_identifier_win() -> None:
    meta = (
        '<article-id pub-id-type="pmc">PMC9000100</article-id>'
        '<article-id pub-id-type="pmid">0042</article-id><article-id pub-id-type="pmid">43</article-id>'
        '<article-id pub-id-type="doi">not a doi</article-id>'
        '<article-id pub-id-type="doi">https://doi.org/10.5555/ABC</article-id>'
        '<pub-date pub-type="epub"><year>2001</year></pub-date>'
        '<pub-date pub-type="epub"><year>2002</year></pub-date>'
    )
    front = only(article(meta))
    assert (front.pmcid, front.pmid, front.doi) == ("PMC9000099", "42", "10.5555/abc")
    assert front.epub_date == PartialDate(year=2001, raw="2001")


@pytest.mark.parametrize(
    ("before_front", "open_access", "withheld"),
    [
        ("", None, False),
        ("<?properties open_access?>", True, False),
        ("<?properties manuscript?>", False, False),
        ("<?properties manuscript open_access?>", True, False),
        ("<?other open_access?>", None, False),
        (
            "<!--The publisher of this article does not allow downloading of the full text in XML form.-->"
            "<?properties manuscript?>",
            False,
            True,
        ),
        ("<!-- an unrelated comment -->", None, False),
    ],
)
def test_properties_and_withheld_full_text(
    before_front: str, open_access: bool | None, withheld: bool
) -> None:
    front = only(article("", before_front=before_front))
    assert (front.open_access, front.full_text_withheld) == (open_access, withheld)


def test_pages_from_fpage_and_lpage() -> None:
    assert only(article("<fpage>e12</fpage>")).pages == "e12"
    assert (
        only(article("<fpage>100</fpage><lpage>109</lpage><page-range>100-9</page-range>")).pages == "100-109"
    )


def test_article_without_pmc_id_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    data = article_set(article_element("", pmc_id=False), article_element(""))
    with caplog.at_level(logging.WARNING, logger="enrich.pmc_jats"):
        fronts = list(parse_pmc_articles(data))
    assert [f.pmcid for f in fronts] == ["PMC9000099"]
    assert "without a PMC id" in caplog.text


def test_empty_article_set_yields_nothing() -> None:
    assert list(parse_pmc_articles(b"<?xml version='1.0'?><pmc-articleset></pmc-articleset>")) == []


def test_truncated_document_yields_what_came_before_then_raises_parse_error() -> None:
    data = (FIXTURES_DIR / "efetch_pmc_three_articles.xml").read_bytes()
    cut = data[: data.index(b"Third in the set")]
    got: list[str] = []
    with pytest.raises(ParseError) as caught:
        for front in parse_pmc_articles(cut):
            got.append(front.pmcid)
    assert got == ["PMC9000013", "PMC9000011"]
    assert "not well-formed" in str(caught.value)
    assert not isinstance(caught.value, etree.XMLSyntaxError)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<PubmedArticleSet><PubmedArticle/></PubmedArticleSet>", id="pubmed"),
        pytest.param(b"<eFetchResult><ERROR>Empty id list</ERROR></eFetchResult>", id="efetch-error"),
        pytest.param(b"<html><body><p>Service unavailable</p></body></html>", id="html"),
        pytest.param(b"<html>" + article("") + b"</html>", id="set-inside-html"),
        pytest.param(article_set(b"<wrapper>" + article_element("") + b"</wrapper>"), id="nested"),
        pytest.param(b"", id="empty"),
        pytest.param(b"PMID- 12345\nTI  - a MEDLINE text record", id="text"),
        pytest.param(b"<pmc-articleset><article>", id="unclosed"),
    ],
)
def test_documents_that_are_not_pmc_xml_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        list(parse_pmc_articles(data))


def test_wrong_root_names_the_root() -> None:
    with pytest.raises(ParseError, match="<eSearchResult>"):
        list(parse_pmc_articles(b"<eSearchResult><Count>0</Count></eSearchResult>"))
    with pytest.raises(ParseError, match="inside <wrapper>"):
        list(parse_pmc_articles(article_set(b"<wrapper>" + article_element("") + b"</wrapper>")))


@pytest.mark.parametrize("name", HAND_WRITTEN)
def test_keep_raw_round_trips_every_hand_written_fixture(name: str) -> None:
    fronts = list(parse_pmc_articles(FIXTURES_DIR / name, keep_raw=True))
    assert fronts
    for front in fronts:
        assert front.raw_xml is not None
        assert front.raw_xml.startswith(b"<article ") and b"<body" not in front.raw_xml
        again = list(parse_pmc_articles(front.raw_xml, keep_raw=True))
        assert again == [front]
        assert again[0].raw_xml == front.raw_xml  # the fragment is a fixed point


def test_keep_raw_keeps_the_article_attributes_and_instructions() -> None:
    [front] = list(parse_pmc_articles(SEED_FIXTURE, keep_raw=True))
    assert front.raw_xml is not None
    root = parse_document(front.raw_xml)
    assert root.tag == "article"
    assert dict(root.items()) == {
        "article-type": "review-article",
        "{http://www.w3.org/XML/1998/namespace}lang": "en",
        "dtd-version": "1.3",
    }
    assert [child.tag for child in root if isinstance(child.tag, str)] == ["front"]
    assert b"<?properties open_access?>" in front.raw_xml
    assert b"Placeholder" not in front.raw_xml


def test_every_kind_of_source(tmp_path: Path) -> None:
    data = SEED_FIXTURE.read_bytes()
    [expected] = list(parse_pmc_articles(data))
    copy = tmp_path / "answer.xml"
    copy.write_bytes(data)
    with copy.open("rb") as handle:
        from_handle = list(parse_pmc_articles(handle))
    assert from_handle == [expected]
    assert list(parse_pmc_articles(str(copy))) == [expected]
    assert list(parse_pmc_articles(copy)) == [expected]
    assert list(parse_pmc_articles(io.BytesIO(data))) == [expected]
    assert list(parse_pmc_articles(data.decode("utf-8"))) == [expected]


def test_articles_are_released_as_the_parse_goes() -> None:
    """The root keeps no handled article, so memory does not grow with the answer."""
    data = article_set(*[article_element("")] * 2000)
    seen = 0
    for front in parse_pmc_articles(data, keep_raw=True):
        seen += 1
        assert front.raw_xml is not None and b"9000099" in front.raw_xml
    assert seen == 2000


# ------------------------------------------------------------------------------- properties

_xml_char = st.characters(exclude_categories=("Cs", "Cc", "Cn")) | st.sampled_from(" \n\t\r")
_xml_text = st.text(alphabet=_xml_char, max_size=12)
_INLINE_TAGS = ("italic", "bold", "sup", "sub", "sc", "underline", "monospace")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@given(st.lists(st.tuples(_xml_text, st.sampled_from((None, *_INLINE_TAGS))), max_size=8))
def test_title_with_inline_tags_is_never_truncated(segments: list[tuple[str, str | None]]) -> None:
    markup = "".join(f"<{tag}>{_escape(text)}</{tag}>" if tag else _escape(text) for text, tag in segments)
    plain = "".join(text for text, _ in segments)
    front = only(article(f"<title-group><article-title>{markup}</article-title></title-group>"))
    expected = re.sub(r"[ \t\r\n]+", " ", plain.replace("\r\n", "\n").replace("\r", "\n")).strip(" ")
    assert front.title == (expected or None)


@given(
    st.one_of(
        st.text(max_size=30),
        st.from_regex(r"10\.[0-9]{3,10}(\.[0-9]+)?/[!-~ ]{0,20}\s?", fullmatch=True),
        st.builds(lambda s: "10.1234/" + s, st.text(max_size=20)),
    )
)
def test_doi_shortcut_agrees_with_doi_or_none(value: str) -> None:
    assert _doi_or_none(value) == doi_or_none(value)
