"""Frozen, typed records of the enrichment sources (PMC front matter, Crossref works).

They share small value types (licences, funders, update relations) so that reconciliation can compare
what two sources say about the same thing. Every collection is a tuple; absent values are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harvester.core.records import PartialDate


@dataclass(frozen=True, slots=True)
class License:
    """A licence statement: its URL where given, a type ("open-access", "vor", "tdm", "cc-by"), its text."""

    url: str | None = None
    license_type: str | None = None  # JATS @license-type, or Crossref content-version
    text: str | None = None
    start: PartialDate | None = None


@dataclass(frozen=True, slots=True)
class Funder:
    """A funder with its award ids; ``doi`` is the Open Funder Registry DOI (lower-case) where known."""

    name: str | None = None
    doi: str | None = None
    awards: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateRelation:
    """An update link: ``kind`` "retraction", "correction", "new_version", ...; ``doi`` the other work.

    ``direction`` is "updated-by" (this work was updated by ``doi``) or "update-to" (this work updates it);
    ``source`` is who asserted it ("publisher", "retraction-watch").
    """

    kind: str
    doi: str | None
    direction: str
    source: str | None = None
    date: PartialDate | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class ContributorName:
    """An author as Crossref or JATS names them; ``position`` counts from 1."""

    position: int
    family: str | None = None
    given: str | None = None
    suffix: str | None = None
    name: str | None = None  # an organisation or collaboration
    orcid: str | None = None
    affiliations: tuple[str, ...] = ()
    sequence: str | None = None  # Crossref "first" / "additional"


@dataclass(frozen=True, slots=True)
class PmcFront:
    """The front matter of one PMC article (efetch db=pmc), the parts PubMed does not carry."""

    pmcid: str  # "PMC8958025"
    pmid: str | None = None  # None: PMC articles without a PubMed record exist
    doi: str | None = None
    article_type: str | None = None
    title: str | None = None
    journal_title: str | None = None
    publisher: str | None = None
    issns: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()  # article-categories subjects, e.g. ("Oncology",)
    keywords: tuple[str, ...] = ()
    licenses: tuple[License, ...] = ()
    copyright_statement: str | None = None
    copyright_year: int | None = None
    epub_date: PartialDate | None = None
    ppub_date: PartialDate | None = None
    collection_date: PartialDate | None = None
    pmc_release_date: PartialDate | None = None
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None
    elocation_id: str | None = None
    funders: tuple[Funder, ...] = ()
    funding_statement: str | None = None
    contributors: tuple[ContributorName, ...] = ()
    open_access: bool | None = None  # <?properties open_access?>
    full_text_withheld: bool = False  # "The publisher of this article does not allow downloading ..."
    raw_xml: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CrossrefWork:
    """One Crossref work (``message`` of /works/{doi}, or an item of a /works list)."""

    doi: str  # lower-case
    work_type: str | None = None  # "journal-article", "book-chapter", ...
    title: str | None = None
    subtitle: str | None = None
    container_title: str | None = None
    short_container_title: str | None = None
    publisher: str | None = None
    issns: tuple[str, ...] = ()
    issn_print: str | None = None
    issn_electronic: str | None = None
    isbns: tuple[str, ...] = ()
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None
    article_number: str | None = None
    issued: PartialDate | None = None
    published_print: PartialDate | None = None
    published_online: PartialDate | None = None
    language: str | None = None
    abstract: str | None = None  # JATS markup flattened to text
    authors: tuple[ContributorName, ...] = ()
    licenses: tuple[License, ...] = ()
    funders: tuple[Funder, ...] = ()
    subjects: tuple[str, ...] = ()
    is_referenced_by_count: int | None = None
    references_count: int | None = None
    updates: tuple[UpdateRelation, ...] = ()  # update-to and updated-by, both directions
    relations: tuple[tuple[str, str], ...] = ()  # (relation type, DOI/id), e.g. ("has-preprint", "10...")
    clinical_trial_numbers: tuple[str, ...] = ()
    pmid: str | None = None  # rarely present in Crossref
    raw_json: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def retraction_relations(self) -> tuple[UpdateRelation, ...]:
        """Relations that say this work is retracted (updated-by a retraction notice)."""
        return tuple(u for u in self.updates if u.direction == "updated-by" and u.kind == "retraction")


@dataclass(frozen=True, slots=True)
class IciteRecord:
    """One article as NIH iCite describes it (``/api/pubs``, either answer shape, or a snapshot row).

    Every value is optional: iCite leaves fields out, and provisional records carry few. Flags are
    ``True``/``False`` whichever spelling came ("Yes"/"No", true/false, 1/0). Citing and cited PMIDs are
    the NIH Open Citation Collection's, as digit strings.
    """

    pmid: str
    doi: str | None = None
    title: str | None = None
    year: int | None = None
    journal: str | None = None
    authors: tuple[str, ...] = ()  # display names, as iCite gives them
    is_research_article: bool | None = None
    citation_count: int | None = None
    relative_citation_ratio: float | None = None
    nih_percentile: float | None = None
    field_citation_rate: float | None = None
    expected_citations_per_year: float | None = None
    citations_per_year: float | None = None
    apt: float | None = None  # approximate potential to translate
    is_clinical: bool | None = None
    provisional: bool | None = None
    human: float | None = None
    animal: float | None = None
    molecular_cellular: float | None = None
    x_coord: float | None = None
    y_coord: float | None = None
    cited_by_clinical: tuple[str, ...] = ()  # cited_by_clin
    cited_by: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    last_modified: str | None = None  # ISO date-time, when iCite gave one
    raw_json: bytes | None = field(default=None, compare=False, repr=False)
