"""Articles read back as JSON-able documents (``show``, ``export``), and lookup of articles by any id.

Every document has every key of :data:`DOCUMENT_KEYS` (None or [] when the source had nothing); the
README documents them. Documents are built in chunks of :data:`CHUNK` articles, so exporting the whole
table uses the same memory as exporting a hundred articles, and inside one read transaction, so an
export is a consistent snapshot even while a harvest writes.

CSV export has one row per article and these columns (lists joined with "; ", booleans "true"/"false",
missing values empty):

- pmid, pmid_version, pmcid, doi, record_type, title, abstract
- journal (title), journal_iso_abbrev, issn (print, else electronic, else linking): as the article's
  own record gives them (articles.journal_facts), not the journal row merged from other records
- volume, issue, pages
- pub_date (ISO partial), pub_year, epub_date
- authors ("Last, Fore" or the collective name), orcids (in author order, those known)
- language (codes), publication_types, mesh (descriptor names), keywords, grants ("agency grant_id")
- medline_status, publication_status, retracted, deleted, references_count, created_at, updated_at
- license_url (of the licence the article is under), publisher, subjects, citation_count, funders ("name
  (award, award)" each), retraction_sources ("source: statement" each)

Enrichment (PMC, Crossref) adds licence, copyright, subjects, funders, counts, update relations and
clinical trials; ``provenance`` names the source of each merged field (see :mod:`enrich.merge`): the
field_provenance row, or, for a field with a value and no row, the article's current PubMed record.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from db.columns import METRIC_FIELDS
from db.reading import Snapshot, read_snapshot
from harvester.core.errors import InvalidIdentifierError
from harvester.core.ids import normalize_doi, normalize_pmcid, normalize_pmid
from harvester.core.policy import FIELDS, is_empty

if TYPE_CHECKING:
    from db.reading import Database

CHUNK = 200  # articles per round of queries
IN_CHUNK = 500
ICITE_SOURCE = "icite"  # article_metrics.source of iCite's rows (db.icite.SOURCE)

DOCUMENT_KEYS: tuple[str, ...] = (
    "pmid",
    "pmid_version",
    "pmcid",
    "doi",
    "record_type",
    "title",
    "vernacular_title",
    "abstract",
    "abstract_copyright",
    "abstract_sections",
    "other_abstracts",
    "journal",
    "pub_date",
    "pub_year",
    "pub_date_raw",
    "epub_date",
    "dates",
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
    "elocation_ids",
    "coi_statement",
    "medline_status",
    "publication_status",
    "date_completed",
    "date_revised",
    "book_title",
    "publisher",
    "license",
    "licenses",
    "copyright",
    "copyright_year",
    "subjects",
    "funders",
    "citation_count",
    "crossref_type",
    "crossref_status",
    "pmc_status",
    "updates",
    "clinical_trials",
    "retracted",
    "retraction_sources",
    "in_pubmed",
    "deleted",
    "disagreements",
    "provenance",
    "created_at",
    "updated_at",
    "icite_status",  # migration 0009: "found" / "not_found" / None (never asked)
    "metrics",  # {"icite": the latest metrics, valid_on, and citation edge counts} ({} when none)
)

CSV_COLUMNS: tuple[str, ...] = (
    "pmid",
    "pmid_version",
    "pmcid",
    "doi",
    "record_type",
    "title",
    "abstract",
    "journal",
    "journal_iso_abbrev",
    "issn",
    "volume",
    "issue",
    "pages",
    "pub_date",
    "pub_year",
    "epub_date",
    "authors",
    "orcids",
    "language",
    "publication_types",
    "mesh",
    "keywords",
    "grants",
    "medline_status",
    "publication_status",
    "retracted",
    "deleted",
    "references_count",
    "created_at",
    "updated_at",
    "license_url",
    "publisher",
    "subjects",
    "citation_count",
    "funders",
    "retraction_sources",
    "icite_citation_count",
    "relative_citation_ratio",
    "nih_percentile",
    "metrics_valid_on",
)

_PMCID_LIKE = re.compile(r"^\s*pmc", re.IGNORECASE)
_PMID_LIKE = re.compile(r"^\s*(?:pmid\s*:?\s*)?\d+\s*$", re.IGNORECASE)


def resolve_identifiers(database: Database, identifiers: Sequence[str]) -> dict[str, int | None]:
    """Map each identifier as the user typed it to the id of the article it names, or None if none does.

    Digits alone (or "PMID:" digits) are a PMID; "PMC" digits in any case a PMCID; anything else must be a
    DOI, bare, "doi:"-prefixed or a doi.org URL, in any case. A DOI or PMCID that an article carries only
    in its identifiers (an ELocationID, or a record stored before migration 0006 lost it to another
    article) is found too. A DOI or PMCID several articles hold names the first one stored (lowest id);
    report_shared_identifiers lists them all.

    Raises:
        InvalidIdentifierError: an identifier is none of these.
        StorageError: the database could not be read.
    """
    kinds: dict[str, tuple[str, str]] = {text: _classify(text) for text in identifiers}
    by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, value in kinds.values():
        by_kind[kind].add(value)
    found: dict[tuple[str, str], int] = {}
    with read_snapshot(database, "cannot read") as snap:
        for kind, by_column, id_types in (
            ("pmid", "SELECT pmid, id FROM articles WHERE pmid IN ? ORDER BY id", ("pubmed",)),
            ("pmcid", "SELECT pmcid, id FROM articles WHERE pmcid IN ? ORDER BY id", ("pmc",)),
            ("doi", "SELECT doi, id FROM articles WHERE doi IN ? ORDER BY id", ("doi", "eloc:doi")),
        ):
            values = sorted(by_kind[kind])
            for chunk in _chunks(values):
                for value, article_id in snap.rows(by_column, [chunk]):
                    found.setdefault((kind, value), article_id)  # shared (issue 13): the first stored
            missing = [v for v in values if (kind, v) not in found]
            for chunk in _chunks(missing):
                query = (
                    "SELECT value, min(article_id) FROM article_identifiers"
                    " WHERE id_type IN ? AND value IN ? GROUP BY value"
                )
                for value, article_id in snap.rows(query, [id_types, chunk]):
                    found[(kind, value)] = article_id
    return {text: found.get(kinds[text]) for text in identifiers}


def load_documents(
    database: Database, article_ids: Sequence[int] | None = None, *, include_deleted: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield the document of each article: of ``article_ids`` in the order given, or of all in id order.

    Raises:
        StorageError: the database could not be read.
    """
    with read_snapshot(database, "cannot read") as snap:
        if article_ids is None:
            last = 0
            while True:
                if include_deleted:
                    query, params = "SELECT id FROM articles WHERE id > ? ORDER BY id LIMIT ?", [last, CHUNK]
                else:
                    query = "SELECT id FROM articles WHERE id > ? AND deleted = ? ORDER BY id LIMIT ?"
                    params = [last, False, CHUNK]
                ids = [row.id for row in snap.rows(query, params)]
                if not ids:
                    return
                docs = _documents(snap, ids)
                yield from (docs[i] for i in ids)
                last = ids[-1]
        else:
            wanted = list(dict.fromkeys(article_ids))
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                docs = _documents(snap, chunk)
                for article_id in chunk:
                    doc = docs.get(article_id)
                    if doc is not None and (include_deleted or not doc["deleted"]):
                        yield doc


def export_documents(
    database: Database, fmt: Literal["jsonl", "csv"], out: TextIO, *, include_deleted: bool = False
) -> int:
    """Write every article's document to ``out`` as JSON Lines or CSV; returns how many were written.

    Raises:
        StorageError: the database could not be read.
        ValueError: an unknown format.
    """
    count = 0
    if fmt == "jsonl":
        for doc in load_documents(database, include_deleted=include_deleted):
            out.write(json.dumps(doc, ensure_ascii=False))
            out.write("\n")
            count += 1
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for doc in load_documents(database, include_deleted=include_deleted):
            writer.writerow(csv_row(doc))
            count += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}: use jsonl or csv")
    return count


def csv_row(doc: dict[str, Any]) -> dict[str, str]:
    """Flatten a document into the CSV columns."""
    journal = doc["journal"]
    values: dict[str, Any] = {key: doc[key] for key in CSV_COLUMNS if key in doc}
    values.update(
        journal=journal["title"],
        journal_iso_abbrev=journal["iso_abbrev"],
        issn=journal["issn"],
        volume=journal["volume"],
        issue=journal["issue"],
        pages=journal["pages"],
        authors=[_author_name(a) for a in doc["authors"]],
        orcids=[a["orcid"] for a in doc["authors"] if a["orcid"]],
        mesh=[m["descriptor"] for m in doc["mesh"]],
        grants=[" ".join(filter(None, (g["agency"], g["grant_id"]))) for g in doc["grants"]],
        license_url=(doc["license"] or {}).get("url"),
        funders=[_funder_text(f) for f in doc["funders"]],
        retraction_sources=[f"{r['source']}: {r['statement']}" for r in doc["retraction_sources"]],
        **_metrics_columns(doc.get("metrics") or {}),
    )
    return {key: _csv_value(values[key]) for key in CSV_COLUMNS}


def _metrics_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    icite = metrics.get("icite") or {}
    return {
        "icite_citation_count": icite.get("citation_count"),
        "relative_citation_ratio": icite.get("relative_citation_ratio"),
        "nih_percentile": icite.get("nih_percentile"),
        "metrics_valid_on": icite.get("valid_on"),
    }


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value if v)
    return str(value)


def _funder_text(funder: dict[str, Any]) -> str:
    name = funder["name"] or funder["doi"] or "funder not named"
    return f"{name} ({', '.join(funder['awards'])})" if funder["awards"] else name


def _author_name(author: dict[str, Any]) -> str:
    if author["collective_name"] and not author["last_name"]:
        return str(author["collective_name"])
    first = author["fore_name"] or author["initials"]
    return ", ".join(filter(None, (author["last_name"], first)))


def _classify(text: str) -> tuple[str, str]:
    if _PMCID_LIKE.match(text):
        return "pmcid", normalize_pmcid(text)
    if _PMID_LIKE.match(text):
        return "pmid", normalize_pmid(text)
    try:
        return "doi", normalize_doi(text)
    except InvalidIdentifierError:
        raise InvalidIdentifierError(
            "identifier", text, "expected a PMID (digits), a PMCID (PMC + digits) or a DOI (10.…/…)"
        ) from None


_JOURNAL_KEYS = ("title", "iso_abbrev", "medline_ta", "issn_print", "issn_electronic", "issn_linking")
_JOURNAL_COLUMNS = (*_JOURNAL_KEYS, "nlm_unique_id", "country")  # of journals, all but id and journal_key
# Each article with its journal row's columns as journal_<name>; and the iCite rows, oldest first.
_ARTICLES_QUERY = (
    f"SELECT a.*, {', '.join(f'j.{name} AS journal_{name}' for name in _JOURNAL_COLUMNS)}"  # noqa: S608 - our names
    " FROM articles AS a LEFT OUTER JOIN journals AS j ON j.id = a.journal_id WHERE a.id IN ?"
)
_METRICS_QUERY = (
    f"SELECT id, article_id, valid_on, {', '.join(METRIC_FIELDS)} FROM article_metrics"  # noqa: S608 - our names
    " WHERE article_id IN ? AND source = ? ORDER BY article_id, valid_on, id"
)


def _own_journal(row: Any) -> dict[str, Any]:
    """The journal as the article's own record gives it (``articles.journal_facts``), not the values the
    journals row merged from other articles' records (issue 13); an article stored before migration
    0006 has none yet, and shows its journal row until its record is stored again."""
    if row.journal_facts:
        own = json.loads(row.journal_facts)
    else:
        own = {name: getattr(row, f"journal_{name}") for name in _JOURNAL_COLUMNS}
    facts = {name: own.get(name) for name in ("title", "iso_abbrev", "medline_ta")}
    facts["issn"] = own.get("issn_print") or own.get("issn_electronic") or own.get("issn_linking")
    facts.update({name: own.get(name) for name in ("issn_print", "issn_electronic", "issn_linking")})
    facts.update({name: own.get(name) for name in ("nlm_unique_id", "country")})
    return facts


def _documents(snap: Snapshot, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The documents of these articles, by article id: one query per table for the whole chunk."""
    ids = list(ids)
    rows = snap.rows(_ARTICLES_QUERY, [ids])
    children = {name: _child_rows(snap, name, ids) for name in _CHILD_ORDER}
    references: dict[int, int] = {
        article_id: count
        for article_id, count in snap.rows(
            "SELECT article_id, count(*) FROM article_references WHERE article_id IN ? GROUP BY article_id",
            [ids],
        )
    }
    # The article's current PubMed record: the latest pubmed source record (fetched_at, then id).
    pubmed: dict[int, tuple[tuple[datetime, int], str, datetime]] = {}
    for article_id, record_id, source_id, fetched_at in snap.rows(
        "SELECT article_id, id, source_id, fetched_at FROM source_records"
        " WHERE article_id IN ? AND source = ?",
        [ids, "pubmed"],
    ):
        known = pubmed.get(article_id)
        if known is None or (fetched_at, record_id) > known[0]:
            pubmed[article_id] = ((fetched_at, record_id), source_id, fetched_at)
    docs = {
        row.id: _document(
            row,
            children,
            references.get(row.id, 0),
            {"source": "pubmed", "source_id": row.pmid or found[1], "fetched_at": _iso(found[2])}
            if (found := pubmed.get(row.id))
            else None,
        )
        for row in rows
    }
    _add_metrics(snap, docs)
    return docs


def _add_metrics(snap: Snapshot, docs: dict[int, dict[str, Any]]) -> None:
    """``icite_status`` and ``metrics``: the latest iCite row and how many stored edges cite or are cited."""
    latest: dict[int, Any] = {}
    for chunk in _chunks(sorted(docs)):
        for row in snap.rows(_METRICS_QUERY, [chunk, ICITE_SOURCE]):
            latest[row.article_id] = row  # ordered: the last one wins (as db.icite.latest_metrics)
    pmids = {doc["pmid"]: article_id for article_id, doc in docs.items() if doc["pmid"]}
    counts: dict[tuple[int, str], int] = {}
    for query, name in (
        (
            "SELECT cited_pmid, count(*) FROM citation_edges WHERE cited_pmid IN ? GROUP BY cited_pmid",
            "cited_by",
        ),
        (
            "SELECT citing_pmid, count(*) FROM citation_edges WHERE citing_pmid IN ? GROUP BY citing_pmid",
            "references",
        ),
    ):
        for chunk in _chunks(sorted(pmids)):
            counts.update({(pmids[pmid], name): n for pmid, n in snap.rows(query, [chunk])})
    for article_id, doc in docs.items():
        row = latest.get(article_id)
        doc["metrics"] = {}
        if row is not None:
            doc["metrics"]["icite"] = {
                "valid_on": row.valid_on.isoformat(),
                **{name: getattr(row, name) for name in METRIC_FIELDS},
                "cited_by_stored_edges": counts.get((article_id, "cited_by"), 0),
                "references_stored_edges": counts.get((article_id, "references"), 0),
            }


# Child tables a document reads, with the columns to order each article's rows by.
_CHILD_ORDER: dict[str, tuple[str, ...]] = {
    "article_identifiers": ("position",),  # not the key there, but the source's order
    "authors": ("position",),
    "author_affiliations": ("author_position", "position"),
    "abstract_sections": ("abstract_index", "position"),
    "article_dates": ("position",),
    "article_languages": ("position",),
    "publication_types": ("position",),
    "mesh_headings": ("position",),
    "mesh_qualifiers": ("heading_position", "position"),
    "keywords": ("position",),
    "chemicals": ("position",),
    "grants": ("position",),
    "comments_corrections": ("position",),
    "article_subjects": ("position",),
    "article_licenses": ("position",),
    "article_funders": ("position",),
    "funder_awards": ("funder_position", "position"),
    "article_updates": ("position",),
    "article_clinical_trials": ("position",),
    "retraction_sources": ("source", "position"),
    "field_disagreements": ("field", "source", "other_source"),
    "field_provenance": ("field",),
}


_CHILD_QUERIES = {
    name: f"SELECT * FROM {name} WHERE article_id IN ? ORDER BY {', '.join(('article_id', *order))}"  # noqa: S608 - our names
    for name, order in _CHILD_ORDER.items()
}


def _child_rows(snap: Snapshot, name: str, ids: list[int]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in snap.rows(_CHILD_QUERIES[name], [ids]):
        grouped[row.article_id].append(row)
    return grouped


def _document(
    row: Any,
    children: dict[str, dict[int, list[Any]]],
    references_listed: int,
    pubmed_record: dict[str, Any] | None,
) -> dict[str, Any]:
    article_id = row.id

    def rows(name: str) -> list[Any]:
        return children[name].get(article_id, [])

    affiliations: dict[int, list[str]] = defaultdict(list)
    for aff in rows("author_affiliations"):
        affiliations[aff.author_position].append(aff.affiliation)
    qualifiers: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for q in rows("mesh_qualifiers"):
        qualifiers[q.heading_position].append({"name": q.qualifier, "ui": q.qualifier_ui, "major": q.major})
    abstracts: dict[int, list[Any]] = defaultdict(list)
    for section in rows("abstract_sections"):
        abstracts[section.abstract_index].append(section)
    awards: dict[int, list[str]] = defaultdict(list)
    for award in rows("funder_awards"):
        awards[award.funder_position].append(award.award_id)
    identifiers: dict[str, str] = {}  # ArticleIdList, first of each type
    elocations: list[dict[str, Any]] = []
    for ident in rows("article_identifiers"):
        if ident.id_type.startswith("eloc:"):
            elocations.append({"type": ident.id_type[5:], "value": ident.value, "valid": ident.valid})
        else:
            identifiers.setdefault(ident.id_type, ident.value)

    doc: dict[str, Any] = {
        "pmid": row.pmid,
        "pmid_version": row.pmid_version,
        "pmcid": row.pmcid,
        "doi": row.doi,
        "record_type": row.record_type,
        "title": row.title,
        "vernacular_title": row.vernacular_title,
        "abstract": row.abstract,
        "abstract_copyright": row.abstract_copyright,
        "abstract_sections": [_section(s) for s in abstracts.get(0, [])],
        "other_abstracts": [
            {
                "kind": sections[0].kind,
                "language": sections[0].language,
                "text": "\n".join(f"{s.label}: {s.text}" if s.label else s.text for s in sections if s.text),
                "sections": [_section(s) for s in sections],
            }
            for index, sections in sorted(abstracts.items())
            if index > 0
        ],
        "journal": {
            **_own_journal(row),
            "volume": row.volume,
            "issue": row.issue,
            "pages": row.pages,
        },
        "pub_date": row.pub_date,
        "pub_year": row.pub_year,
        "pub_date_raw": row.pub_date_raw,
        "epub_date": row.epub_date,
        "dates": [{"kind": d.kind, "date": d.iso, "raw": d.raw} for d in rows("article_dates")],
        "authors": [
            {
                "last_name": au.last_name,
                "fore_name": au.fore_name,
                "initials": au.initials,
                "suffix": au.suffix,
                "collective_name": au.collective_name,
                "orcid": au.orcid,
                "affiliations": affiliations.get(au.position, []),
                "valid": au.valid,
                "equal_contrib": au.equal_contrib,
            }
            for au in rows("authors")
        ],
        "language": [lang.language for lang in rows("article_languages")],
        "publication_types": [pt.name for pt in rows("publication_types")],
        "mesh": [
            {
                "descriptor": m.descriptor,
                "ui": m.descriptor_ui,
                "major": m.major,
                "type": m.descriptor_type,
                "qualifiers": qualifiers.get(m.position, []),
            }
            for m in rows("mesh_headings")
        ],
        "keywords": [k.keyword for k in rows("keywords")],
        "chemicals": [
            {"name": c.name, "registry_number": c.registry_number, "ui": c.ui} for c in rows("chemicals")
        ],
        "grants": [
            {"grant_id": g.grant_id, "acronym": g.acronym, "agency": g.agency, "country": g.country}
            for g in rows("grants")
        ],
        "comments_corrections": [
            {"ref_type": cc.ref_type, "ref_source": cc.ref_source, "pmid": cc.ref_pmid, "note": cc.note}
            for cc in rows("comments_corrections")
        ],
        # the column (Crossref's count, else PubMed's list) once set; the list's length for older rows
        "references_count": row.references_count if row.references_count is not None else references_listed,
        "identifiers": identifiers,
        "elocation_ids": elocations,
        "coi_statement": row.coi_statement,
        "medline_status": row.medline_status,
        "publication_status": row.publication_status,
        "date_completed": row.date_completed,
        "date_revised": row.date_revised,
        "book_title": row.book_title,
        "publisher": row.publisher,
        "license": (
            {"url": row.license_url, "type": row.license_type}
            if row.license_url is not None or row.license_type is not None
            else None
        ),
        "licenses": [
            {"url": lic.url, "type": lic.license_type, "text": lic.text, "start": lic.start_date}
            for lic in rows("article_licenses")
        ],
        "copyright": row.copyright,
        "copyright_year": row.copyright_year,
        "subjects": [s.subject for s in rows("article_subjects")],
        "funders": [
            {"name": f.name, "doi": f.funder_doi, "awards": awards.get(f.position, [])}
            for f in rows("article_funders")
        ],
        "citation_count": row.citation_count,
        "crossref_type": row.crossref_type,
        "crossref_status": row.crossref_status,
        "pmc_status": row.pmc_status,
        "updates": [
            {
                "kind": u.kind,
                "direction": u.direction,
                "doi": u.doi,
                "asserted_by": u.asserted_by,
                "date": u.update_date,
                "label": u.label,
            }
            for u in rows("article_updates")
        ],
        "clinical_trials": [t.number for t in rows("article_clinical_trials")],
        "retracted": bool(row.retracted),
        "retraction_sources": [
            {"source": r.source, "statement": r.statement, "notice": r.notice}
            for r in rows("retraction_sources")
        ],
        "in_pubmed": bool(row.in_pubmed),
        "deleted": bool(row.deleted),
        "disagreements": [
            {
                "field": d.field,
                "source": d.source,
                "value": d.value,
                "other_source": d.other_source,
                "other_value": d.other_value,
                "detected_at": _iso(d.detected_at),
            }
            for d in rows("field_disagreements")
        ],
        "provenance": {},
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "icite_status": row.icite_status,
    }
    # The provenance of each field with a value: its field_provenance row, else the current PubMed record
    # (the rule of db.reconcile, whose read_provenance gives the same for a fraction of the queries).
    rows_by_field = {p.field: p for p in rows("field_provenance")}
    unknown = {"source": "unknown", "source_id": "", "fetched_at": _iso(row.created_at)}
    provenance: dict[str, dict[str, Any]] = {}
    for name in FIELDS:
        value = row.references_count if name == "references_count" else _field_value(doc, name)
        if is_empty(value):
            continue
        found = rows_by_field.get(name)
        if found is not None:
            provenance[name] = {
                "source": found.source,
                "source_id": found.source_id,
                "fetched_at": _iso(found.fetched_at),
            }
        else:
            provenance[name] = dict(pubmed_record or unknown)
    doc["provenance"] = provenance
    return doc


_JOURNAL_FIELDS = {
    "journal_title": "title",
    "journal_iso_abbrev": "iso_abbrev",
    "issn": "issn",
    "volume": "volume",
    "issue": "issue",
    "pages": "pages",
}


def _field_value(doc: dict[str, Any], name: str) -> Any:
    """The document's value of a field named as enrich.merge names it."""
    if name in _JOURNAL_FIELDS:
        return doc["journal"][_JOURNAL_FIELDS[name]]
    return doc.get(name)


def _section(section: Any) -> dict[str, Any]:
    return {"label": section.label, "nlm_category": section.nlm_category, "text": section.text}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
