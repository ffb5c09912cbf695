"""The differences between an article's merge and what it stores, gathered for a batch and written one
statement per table.

Only differences are written: article columns, the child tables of changed fields (replaced per
article), the journal, field_provenance (a row only for a value that did not come from the current
PubMed record: see :mod:`db.article_state`), field_disagreements (rows added or removed), retraction
statements and ``retracted``, and one article_history row per changed field (old and new value as JSON,
the winning source, the run, the time). Merging the same inputs again writes nothing.

``doi`` and ``pmcid`` are not unique: several articles may hold one (migration 0006), so a merge writes
them as any other field. The journal's change is recorded in history as field "journal" (old and new
journal keys).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.article_state import ArticleState
from db.history import history_row
from db.inserts import chunks, dialect_insert
from db.journals import JOURNAL_FIELDS, journal_key
from db.models import metadata
from enrich.merge import Merged, Provenance
from enrich.payloads import PUBMED
from harvester.core.records import Journal

_T = metadata.tables
ARTICLES = _T["articles"]
PROVENANCE = _T["field_provenance"]
DISAGREEMENTS = _T["field_disagreements"]
HISTORY = _T["article_history"]

# Fields stored in child tables: the tables, children first (the order rows are deleted in).
_TABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "authors": ("author_affiliations", "authors"),
    "keywords": ("keywords",),
    "subjects": ("article_subjects",),
    "licenses": ("article_licenses",),
    "funders": ("funder_awards", "article_funders"),
    "updates": ("article_updates",),
    "clinical_trials": ("article_clinical_trials",),
}


@dataclass(slots=True)
class Writes:
    """The differences of a batch, gathered first and then written one statement per table."""

    columns: dict[int, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    replaced: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # table -> articles
    children: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    provenance_deleted: list[dict[str, Any]] = field(default_factory=list)
    provenance_upserted: list[dict[str, Any]] = field(default_factory=list)
    disagreements_deleted: list[dict[str, Any]] = field(default_factory=list)
    disagreements_added: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)


def diff_article(
    state: ArticleState,
    result: Merged,
    journal: tuple[Journal | None, Provenance | None, str | None],
    journal_ids: Mapping[str, int],
    writes: Writes,
    history: bool,
) -> None:
    """Gather what differs between the article and its merge."""
    article_id = state.article_id
    changes: list[tuple[str, Any, Any, str]] = []  # field, old, new, source
    for name, value in result.values.items():
        if name in JOURNAL_FIELDS:
            continue
        old = state.values.get(name)
        if old == value:
            continue
        source = result.provenance[name].source
        changes.append((name, old, value, source))
        if name in _TABLE_FIELDS:
            _replace_children(article_id, name, value, writes)
        elif name == "license":
            writes.columns[article_id].update(license_url=value.get("url"), license_type=value.get("type"))
        elif name == "pub_date":
            writes.columns[article_id].update(_pub_date_columns(value))
        else:
            writes.columns[article_id][name] = value

    target, origin, facts = journal
    if facts is not None and facts != state.row["journal_facts"]:
        writes.columns[article_id]["journal_facts"] = facts
    provenance = dict(result.provenance)
    if origin is not None:
        for name in JOURNAL_FIELDS:
            if name in provenance:
                provenance[name] = origin
    if target is not None and origin is not None:
        key = journal_key(target)
        assert key is not None
        writes.columns[article_id]["journal_id"] = journal_ids[key]
        changes.append(("journal", state.journal_key, key, origin.source))

    new_retractions = [dict(r) for r in result.retraction_sources]
    if new_retractions != state.retractions:
        old_set = {json.dumps(r, sort_keys=True) for r in state.retractions}
        new_set = {json.dumps(r, sort_keys=True) for r in new_retractions}
        sources = sorted({json.loads(r)["source"] for r in old_set ^ new_set}) or [PUBMED]
        changes.append(("retraction_sources", state.retractions, new_retractions, ",".join(sources)))
        writes.replaced["retraction_sources"].add(article_id)
        positions: dict[str, int] = defaultdict(int)
        for r in new_retractions:
            source = str(r["source"])
            positions[source] += 1
            writes.children["retraction_sources"].append(
                {"article_id": article_id, "position": positions[source], **r}
            )
        if bool(state.row["retracted"]) != result.retracted:
            writes.columns[article_id]["retracted"] = result.retracted
            changes.append(("retracted", bool(state.row["retracted"]), result.retracted, ",".join(sources)))

    wanted = {name: p for name, p in provenance.items() if p.source != PUBMED}
    for name in state.provenance_rows.keys() - wanted.keys():
        writes.provenance_deleted.append({"b_article_id": article_id, "b_field": name})
    for name, p in wanted.items():
        if state.provenance_rows.get(name) != p:
            writes.provenance_upserted.append(
                {
                    "article_id": article_id,
                    "field": name,
                    "source": p.source,
                    "source_id": p.source_id,
                    "fetched_at": p.fetched_at,
                }
            )

    found = {(d.field, d.source, d.value, d.other_source, d.other_value) for d in result.disagreements}
    for name, source, _value, other_source, _other in state.disagreements - found:
        writes.disagreements_deleted.append(
            {"b_article_id": article_id, "b_field": name, "b_source": source, "b_other_source": other_source}
        )
    for name, source, value, other_source, other_value in found - state.disagreements:
        writes.disagreements_added.append(
            {
                "article_id": article_id,
                "field": name,
                "source": source,
                "value": value,
                "other_source": other_source,
                "other_value": other_value,
            }
        )

    if history:
        writes.history.extend(
            {"article_id": article_id, "field": name, "old": old, "new": new, "source": source}
            for name, old, new, source in changes
        )
    if (
        changes
        or writes.columns.get(article_id)
        or wanted.keys() != state.provenance_rows.keys()
        or any(state.provenance_rows.get(n) != p for n, p in wanted.items())
        or found != state.disagreements
    ):
        writes.touched.add(article_id)


def _pub_date_columns(iso: str) -> dict[str, Any]:
    parts = [int(p) for p in iso.split("-")[:3] if p.isdigit()]
    parts += [None] * (3 - len(parts))  # type: ignore[list-item]
    return {"pub_date": iso, "pub_year": parts[0], "pub_month": parts[1], "pub_day": parts[2]}


def _replace_children(article_id: int, name: str, value: Any, writes: Writes) -> None:
    for table in _TABLE_FIELDS[name]:
        writes.replaced[table].add(article_id)
    rows = writes.children
    for position, item in enumerate(value, 1):
        if name == "authors":
            rows["authors"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    **{
                        key: item.get(key)
                        for key in (
                            "last_name",
                            "fore_name",
                            "initials",
                            "suffix",
                            "collective_name",
                            "orcid",
                        )
                    },
                    "valid": bool(item.get("valid", True)),
                    "equal_contrib": bool(item.get("equal_contrib", False)),
                }
            )
            rows["author_affiliations"].extend(
                {"article_id": article_id, "author_position": position, "position": n, "affiliation": aff}
                for n, aff in enumerate(item.get("affiliations") or (), 1)
            )
        elif name == "keywords":
            rows["keywords"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    "owner": item.get("owner"),
                    "keyword": item["keyword"],
                    "major": bool(item.get("major", False)),
                }
            )
        elif name == "subjects":
            rows["article_subjects"].append({"article_id": article_id, "position": position, "subject": item})
        elif name == "licenses":
            rows["article_licenses"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    **{key: item.get(key) for key in ("url", "license_type", "text", "start_date")},
                }
            )
        elif name == "funders":
            rows["article_funders"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    "name": item.get("name"),
                    "funder_doi": item.get("doi"),
                }
            )
            rows["funder_awards"].extend(
                {"article_id": article_id, "funder_position": position, "position": n, "award_id": award}
                for n, award in enumerate(item.get("awards") or (), 1)
            )
        elif name == "updates":
            rows["article_updates"].append(
                {
                    "article_id": article_id,
                    "position": position,
                    **{
                        key: item.get(key)
                        for key in ("kind", "direction", "doi", "asserted_by", "update_date", "label")
                    },
                }
            )
        elif name == "clinical_trials":
            rows["article_clinical_trials"].append(
                {"article_id": article_id, "position": position, "number": item}
            )


# Child tables in insertion order (a referenced table before the table that references it).
_INSERT_ORDER = (
    "authors",
    "author_affiliations",
    "keywords",
    "article_subjects",
    "article_licenses",
    "article_funders",
    "funder_awards",
    "article_updates",
    "article_clinical_trials",
    "retraction_sources",
)


def apply_writes(conn: Connection, writes: Writes, *, now: datetime, run_id: int | None) -> None:
    """Write the gathered differences: one statement per table (per column set for article updates)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for article_id in sorted(writes.touched):
        columns = writes.columns.get(article_id, {})
        by_columns[tuple(sorted(columns))].append({"b_id": article_id, **columns, "updated_at": now})
    for rows in by_columns.values():
        conn.execute(sa.update(ARTICLES).where(ARTICLES.c.id == sa.bindparam("b_id")), rows)
    for table_name in reversed(_INSERT_ORDER):
        table = _T[table_name]
        for chunk in chunks(sorted(writes.replaced.get(table_name, ()))):
            conn.execute(sa.delete(table).where(table.c.article_id.in_(chunk)))
    for table_name in _INSERT_ORDER:
        if writes.children.get(table_name):
            conn.execute(sa.insert(_T[table_name]), writes.children[table_name])
    prov, dis = PROVENANCE, DISAGREEMENTS
    if writes.provenance_deleted:
        conn.execute(
            sa.delete(prov).where(
                prov.c.article_id == sa.bindparam("b_article_id"), prov.c.field == sa.bindparam("b_field")
            ),
            writes.provenance_deleted,
        )
    if writes.provenance_upserted:
        upsert = dialect_insert(conn, prov)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[prov.c.article_id, prov.c.field],
                set_={name: upsert.excluded[name] for name in ("source", "source_id", "fetched_at")},
            ),
            writes.provenance_upserted,
        )
    if writes.disagreements_deleted:
        conn.execute(
            sa.delete(dis).where(
                dis.c.article_id == sa.bindparam("b_article_id"),
                dis.c.field == sa.bindparam("b_field"),
                dis.c.source == sa.bindparam("b_source"),
                dis.c.other_source == sa.bindparam("b_other_source"),
            ),
            writes.disagreements_deleted,
        )
    if writes.disagreements_added:
        conn.execute(sa.insert(dis), [{**row, "detected_at": now} for row in writes.disagreements_added])
    if writes.history:
        conn.execute(
            sa.insert(HISTORY),
            [
                history_row(
                    h["article_id"], h["field"], h["old"], h["new"], h["source"], now=now, run_id=run_id
                )
                for h in writes.history
            ],
        )


def creation_change(state: ArticleState) -> dict[str, Any]:
    """The history row of an article's creation: field "created", new value its identifiers."""
    ids = {key: state.row.get(key) for key in ("pmid", "pmcid", "doi") if state.row.get(key)}
    source = "pubmed" if "pubmed" in state.sources else next(iter(state.sources), "unknown")
    return {"article_id": state.article_id, "field": "created", "old": None, "new": ids, "source": source}
