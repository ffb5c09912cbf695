"""Merge what PubMed, PMC and Crossref say about one article, field by field, with provenance. Pure.

Each source record is first reduced to a :class:`SourceView`: JSON-able values under the names of
:data:`FIELDS` (lists, never tuples; a source that does not state a field leaves it out). :func:`merge`
then decides each field on its own:

- the first source in the field's policy (:data:`DEFAULT_POLICY`, overridable in the config's [merge]
  table) whose view has a non-empty value wins, and the value keeps that view's provenance;
- a view of a source the field's policy does not name is ignored for that field;
- when no view has the field, the stored value and its provenance stay: a source that omits a field never
  erases it.

Of several views of one source, the latest (``fetched_at``, then ``source_id``) counts; so the outcome
depends on which records are given, never on the order they come in.

Disagreements: for each of :data:`SHARED_FIELDS`, every pair of views that both state the field and differ
after normalisation is reported (as the sources gave the values, the pair ordered by source name).
Normalisation: titles are case-folded with markup, surrounding brackets, a trailing period and repeated
whitespace removed; publishers and journal titles are also compared on letters and digits only ("Frontiers
Media S.A." is "Frontiers Media SA"); DOIs are compared as :func:`harvester.core.ids.normalize_doi` gives
them; ISSNs upper-case without spaces or hyphens, and an ISSN agrees with any ISSN the other source
names for the journal; dates agree at the precision both have ("2022" and "2022-03-08" agree); page ranges are
compared after expanding MEDLINE's short form ("123-9" is "123-129"), and a first page alone agrees with a
range that starts there.

Retraction: every statement of every view (PubMed: publication type "Retracted Publication" and each
CommentsCorrections RetractionIn; Crossref: each updated-by relation of type retraction) is kept with its
source; an article is retracted when any source says so.

Besides the fields, a view's values may carry two keys merge does not store: ``issn_all`` (every ISSN the
source names, to compare ISSNs) and ``retractions`` (the source's retraction statements).
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from enrich.records import ContributorName, CrossrefWork, Funder, License, PmcFront, UpdateRelation
from harvester.core.ids import doi_or_none
from harvester.core.policy import DEFAULT_POLICY, FIELDS, SHARED_FIELDS, SOURCES, is_empty, policy_from_config
from harvester.core.records import RETRACTED_PUBLICATION, RETRACTION_IN, Article, Author, PartialDate

__all__ = [
    "DEFAULT_POLICY",
    "FIELDS",
    "SHARED_FIELDS",
    "SOURCES",
    "Disagreement",
    "Merged",
    "Provenance",
    "SourceView",
    "expand_pages",
    "is_empty",
    "merge",
    "policy_from_config",
    "view_of_crossref",
    "view_of_pmc",
    "view_of_pubmed",
]

_AUXILIARY = ("issn_all", "retractions")


@dataclass(frozen=True, slots=True)
class SourceView:
    """One source record as field values; None, "", [] and {} mean the source does not state a field."""

    source: str
    source_id: str
    fetched_at: datetime
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Provenance:
    source: str
    source_id: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class Disagreement:
    """Two sources state different values of a shared field; ``source`` sorts before ``other_source``."""

    field: str
    source: str
    value: str
    other_source: str
    other_value: str


@dataclass(frozen=True, slots=True)
class Merged:
    """The merged article: a value and its provenance per stated field; what the sources disagree on."""

    values: Mapping[str, Any]
    provenance: Mapping[str, Provenance]
    disagreements: tuple[Disagreement, ...]
    retraction_sources: tuple[dict[str, str | None], ...]  # {"source", "statement", "notice"}

    @property
    def retracted(self) -> bool:
        return bool(self.retraction_sources)

    def as_stored(self) -> dict[str, tuple[Any, Provenance]]:
        """The form :func:`merge` takes as ``stored``: what a store would hold after writing this."""
        return {name: (value, self.provenance[name]) for name, value in self.values.items()}


def merge(
    views: Iterable[SourceView],
    policy: Mapping[str, Sequence[str]] = DEFAULT_POLICY,
    stored: Mapping[str, tuple[Any, Provenance]] | None = None,
) -> Merged:
    """Merge the views field by field by ``policy``; ``stored`` values stay where no view states a field.

    Args:
        views: at most one counts per source (the latest); order does not matter.
        policy: field -> sources in order of precedence (see :func:`policy_from_config`).
        stored: field -> (value, provenance) as stored now.

    Returns:
        The merged values with their provenance, the disagreements between the views, and every
        retraction statement of the views.
    """
    by_source = _latest_per_source(views)
    values: dict[str, Any] = {}
    provenance: dict[str, Provenance] = {}
    for name in FIELDS:
        for source in policy.get(name, ()):
            view = by_source.get(source)
            if view is not None and not is_empty(view.values.get(name)):
                values[name] = view.values[name]
                provenance[name] = Provenance(view.source, view.source_id, view.fetched_at)
                break
        else:
            if stored is not None and name in stored and not is_empty(stored[name][0]):
                values[name], provenance[name] = stored[name]
    retractions: list[dict[str, str | None]] = []
    for source in sorted(by_source):
        for statement in by_source[source].values.get("retractions") or ():
            retractions.append(
                {"source": source, "statement": statement["statement"], "notice": statement.get("notice")}
            )
    return Merged(
        values=values,
        provenance=provenance,
        disagreements=_disagreements(by_source),
        retraction_sources=tuple(retractions),
    )


def _latest_per_source(views: Iterable[SourceView]) -> dict[str, SourceView]:
    latest: dict[str, SourceView] = {}
    for view in views:
        current = latest.get(view.source)
        if current is None or _view_order(view) > _view_order(current):
            latest[view.source] = view
    return latest


def _view_order(view: SourceView) -> tuple[datetime, str, str]:
    # The values' JSON breaks the last tie, so two different views of one record at one time still give
    # one answer whatever their order.
    return (view.fetched_at, view.source_id, json.dumps(view.values, sort_keys=True, default=str))


# ---------------------------------------------------------------------------------------------- compare


def _disagreements(by_source: Mapping[str, SourceView]) -> tuple[Disagreement, ...]:
    found: list[Disagreement] = []
    sources = sorted(by_source)
    for name in SHARED_FIELDS:
        for first, second in itertools.combinations(sources, 2):
            a, b = by_source[first].values, by_source[second].values
            value, other = a.get(name), b.get(name)
            if is_empty(value) or is_empty(other):
                continue
            if not _agree(name, value, other, a, b):
                found.append(Disagreement(name, first, str(value), second, str(other)))
    return tuple(found)


def _agree(name: str, value: Any, other: Any, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    kind = FIELDS[name]
    if kind == "date":
        return _dates_agree(str(value), str(other))
    if kind == "pages":
        return _pages_agree(str(value), str(other))
    if kind == "issn":
        mine, theirs = _issn(str(value)), _issn(str(other))
        if mine == theirs:
            return True
        return mine in {_issn(v) for v in b.get("issn_all") or ()} or theirs in {
            _issn(v) for v in a.get("issn_all") or ()
        }
    return bool(_normal(kind, value) == _normal(kind, other))


_MARKUP = re.compile(r"<[^<>]*>")


def _normal(kind: str, value: Any) -> Any:
    if kind == "doi":
        return doi_or_none(str(value)) or str(value).strip().lower()
    if kind in {"title", "name"}:
        text = unicodedata.normalize("NFKC", _MARKUP.sub("", str(value))).casefold()
        text = " ".join(text.split())
        previous = None
        while text != previous:  # "[Title in translation]." -> "title in translation"
            previous = text
            text = text.rstrip(".").strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1].strip()
        if kind == "name":
            return "".join(ch for ch in text if ch.isalnum())
        return text
    if kind == "text":
        return " ".join(str(value).split()).casefold()
    return value


def _issn(value: str) -> str:
    return value.upper().replace(" ", "").replace("-", "")


def _dates_agree(value: str, other: str) -> bool:
    mine, theirs = value.split("-"), other.split("-")
    common = min(len(mine), len(theirs))
    # "03" and "3" agree; digits are compared as text without their leading zeros (never int(): any length)
    return [_digits(p) for p in mine[:common]] == [_digits(p) for p in theirs[:common]]


def _digits(part: str) -> str:
    return (part.lstrip("0") or "0") if part.isascii() and part.isdigit() else part


_PAGE = re.compile(r"^(\D*)(\d+)$")


def expand_pages(pages: str) -> tuple[str, str | None]:
    """The first page and the last page (None when not given) of a page string; MEDLINE's "123-9" is
    ("123", "129"), "e12-5" is ("e12", "e15"). Of a list ("12-5, 30"), the first range counts."""
    text = pages.strip().replace("\u2013", "-").replace("\u2014", "-")
    first = text.split(",")[0].strip()
    start, sep, end = (part.strip() for part in first.partition("-"))
    if not sep or not end:
        return start.casefold(), None
    start_match, end_match = _PAGE.match(start), _PAGE.match(end)
    if start_match and end_match and (not end_match.group(1) or end_match.group(1) == start_match.group(1)):
        prefix, digits = start_match.groups()
        tail = end_match.group(2)
        if len(tail) < len(digits):
            tail = digits[: len(digits) - len(tail)] + tail
        end = prefix + tail
    return start.casefold(), end.casefold()


def _pages_agree(value: str, other: str) -> bool:
    (start, end), (other_start, other_end) = expand_pages(value), expand_pages(other)
    return start == other_start and (end is None or other_end is None or end == other_end)


# ---------------------------------------------------------------------------------------------- views


def view_of_pubmed(article: Article, fetched_at: datetime) -> SourceView:
    """PubMed's record as a view; source_id is the PMID."""
    journal = article.journal
    epub = article.epub_date
    values: dict[str, Any] = {
        "title": article.title,
        "abstract": (article.abstract.text or None) if article.abstract else None,
        "authors": [_pubmed_author(a) for a in article.authors],
        "journal_title": journal.title,
        "journal_iso_abbrev": journal.iso_abbrev,
        "issn": journal.issn,
        "issn_all": [
            i for i in (journal.issn_print, journal.issn_electronic, journal.issn_linking) if i is not None
        ],
        "volume": article.volume,
        "issue": article.issue,
        "pages": article.pages,
        "pub_date": article.pub_date.iso,
        "epub_date": epub.iso if epub else None,
        "keywords": [{"keyword": k.text, "owner": k.owner, "major": k.major} for k in article.keywords],
        "doi": article.doi.lower() if article.doi else None,
        "pmcid": article.pmcid,
        "publisher": article.publisher,
        "references_count": len(article.references) or None,
        "retractions": pubmed_retractions(article),
    }
    return SourceView("pubmed", article.pmid, fetched_at, _compact(values))


def pubmed_retractions(article: Article) -> list[dict[str, str | None]]:
    """The statements of a PubMed record that it is retracted: {"statement", "notice"} each."""
    found: list[dict[str, str | None]] = []
    if any(pt.name == RETRACTED_PUBLICATION for pt in article.publication_types):
        found.append({"statement": f"PublicationType: {RETRACTED_PUBLICATION}", "notice": None})
    for cc in article.comments_corrections:
        if cc.ref_type == RETRACTION_IN:
            where = cc.ref_source or (f"PMID {cc.pmid}" if cc.pmid else "")
            found.append(
                {"statement": f"{RETRACTION_IN}: {where}".rstrip(), "notice": cc.pmid or cc.ref_source}
            )
    return found


def view_of_pmc(front: PmcFront, fetched_at: datetime) -> SourceView:
    """PMC's front matter as a view; source_id is the PMCID."""
    pub_date = front.ppub_date or front.collection_date or front.epub_date
    values: dict[str, Any] = {
        "title": front.title,
        "authors": [_contributor(c) for c in front.contributors],
        "journal_title": front.journal_title,
        "issn": front.issns[0] if front.issns else None,
        "issn_all": list(front.issns),
        "volume": front.volume,
        "issue": front.issue,
        "pages": front.pages,
        "pub_date": _iso(pub_date),
        "epub_date": _iso(front.epub_date),
        "keywords": [{"keyword": k, "owner": None, "major": False} for k in front.keywords],
        "doi": front.doi.lower() if front.doi else None,
        "pmcid": front.pmcid,
        "publisher": front.publisher,
        "license": _license_value(front.licenses[0]) if front.licenses else None,
        "licenses": [_license(lic) for lic in front.licenses],
        "copyright": front.copyright_statement,
        "copyright_year": front.copyright_year,
        "subjects": list(front.subjects),
        "funders": [_funder(f) for f in front.funders],
    }
    return SourceView("pmc", front.pmcid, fetched_at, _compact(values))


def view_of_crossref(work: CrossrefWork, fetched_at: datetime) -> SourceView:
    """A Crossref work as a view; source_id is its DOI.

    The title joins Crossref's title and subtitle with ": " as PubMed writes them; the licence is the one
    for the version of record ("vor") when there is one; the publication date is the print one, else
    "issued"; the electronic date "published-online".
    """
    title = work.title
    if title and work.subtitle and not title.endswith(work.subtitle):
        title = f"{title}: {work.subtitle}"
    chosen = next((lic for lic in work.licenses if lic.license_type == "vor"), None)
    chosen = chosen or (work.licenses[0] if work.licenses else None)
    values: dict[str, Any] = {
        "title": title,
        "abstract": work.abstract,
        "authors": [_contributor(c) for c in work.authors],
        "journal_title": work.container_title,
        "journal_iso_abbrev": work.short_container_title,
        "issn": work.issn_print or work.issn_electronic or (work.issns[0] if work.issns else None),
        "issn_all": list(work.issns),
        "volume": work.volume,
        "issue": work.issue,
        "pages": work.pages,
        "pub_date": _iso(work.published_print or work.issued),
        "epub_date": _iso(work.published_online),
        "doi": work.doi,
        "publisher": work.publisher,
        "license": _license_value(chosen) if chosen else None,
        "licenses": [_license(lic) for lic in work.licenses],
        "subjects": list(work.subjects),
        "citation_count": work.is_referenced_by_count,
        "references_count": work.references_count,
        "crossref_type": work.work_type,
        "funders": [_funder(f) for f in work.funders],
        "updates": [_update(u) for u in work.updates],
        "clinical_trials": list(work.clinical_trial_numbers),
        "retractions": [
            {
                "statement": f"updated-by retraction {u.doi or '?'}" + (f" ({u.source})" if u.source else ""),
                "notice": u.doi,
            }
            for u in work.retraction_relations
        ],
    }
    return SourceView("crossref", work.doi, fetched_at, _compact(values))


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if not is_empty(value)}


def _iso(date: PartialDate | None) -> str | None:
    return date.iso if date is not None else None


def _pubmed_author(author: Author) -> dict[str, Any]:
    return {
        "last_name": author.last_name,
        "fore_name": author.fore_name,
        "initials": author.initials,
        "suffix": author.suffix,
        "collective_name": author.collective_name,
        "orcid": author.orcid,
        "affiliations": list(author.affiliations),
        "valid": author.valid,
        "equal_contrib": author.equal_contrib,
    }


def _contributor(name: ContributorName) -> dict[str, Any]:
    """A Crossref or JATS contributor in the shape of a PubMed author; initials come from the given name."""
    return {
        "last_name": name.family,
        "fore_name": name.given,
        "initials": initials(name.given),
        "suffix": name.suffix,
        "collective_name": name.name,
        "orcid": name.orcid,
        "affiliations": list(name.affiliations),
        "valid": True,
        "equal_contrib": False,
    }


def initials(given: str | None) -> str | None:
    """PubMed-style initials of a given name: "Jane A." -> "JA", "Jean-Pierre" -> "JP"."""
    if not given:
        return None
    letters = [part[0].upper() for part in re.split(r"[\s\-.]+", given) if part and part[0].isalpha()]
    return "".join(letters) or None


def _license_value(lic: License) -> dict[str, str | None]:
    return {"url": lic.url, "type": lic.license_type}


def _license(lic: License) -> dict[str, str | None]:
    return {"url": lic.url, "license_type": lic.license_type, "text": lic.text, "start_date": _iso(lic.start)}


def _funder(funder: Funder) -> dict[str, Any]:
    return {"name": funder.name, "doi": funder.doi, "awards": list(funder.awards)}


def _update(update: UpdateRelation) -> dict[str, str | None]:
    return {
        "kind": update.kind,
        "direction": update.direction,
        "doi": update.doi,
        "asserted_by": update.source,
        "update_date": _iso(update.date),
        "label": update.label,
    }
