"""Journals: the natural key of a journal, the journal as one record gives it, and journals rows found or
added for a batch.

A journal is keyed "nlm:<NlmUniqueID>", else "issn:<ISSN-L or ISSN>", else "title:<title folded>". Both
the PubMed store and a merge choose journals by this key; a journals row only gains what it lacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from db.inserts import chunks, dialect_insert
from db.models import metadata
from harvester.core.records import Journal

JOURNALS = metadata.tables["journals"]
# The journal's attributes, stored as the journals columns of the same names and in journal_facts.
_COLUMNS = (
    "title",
    "iso_abbrev",
    "medline_ta",
    "nlm_unique_id",
    "issn_print",
    "issn_electronic",
    "issn_linking",
    "country",
)
# The merged fields (enrich.merge) that choose an article's journal as a group, in the order that decides.
JOURNAL_FIELDS = ("journal_title", "issn", "journal_iso_abbrev")


def journal_key(journal: Journal) -> str | None:
    """The journal's natural key; the ISSN-L first, as it is the same for the print and online editions."""
    if journal.nlm_unique_id:
        return f"nlm:{journal.nlm_unique_id}"
    issn = journal.issn_linking or journal.issn
    if issn:
        return f"issn:{issn.upper()}"
    if journal.title:
        return "title:" + " ".join(journal.title.lower().split())
    return None


def journal_facts(journal: Journal | None) -> str | None:
    """The journal as one record gives it, as JSON for ``articles.journal_facts`` (None: it gives none)."""
    if journal is None:
        return None
    facts = {name: getattr(journal, name) for name in _COLUMNS}
    if not any(facts.values()):
        return None
    return json.dumps(facts, ensure_ascii=False, sort_keys=True)


def resolve_journals(conn: Connection, journals: Iterable[Journal]) -> dict[str, int]:
    """Journal ids by key: missing journals are inserted, and what a stored journal lacks is filled in.

    A known attribute is never overwritten, so storing the same records again changes nothing. Writers
    side by side (db.engine.begin_keyed_write) may add or fill the same journal at once: an insert that
    finds the row another writer just added leaves it, and is filled in like a row found stored; each
    fill sets only what the row lacks when the UPDATE runs (COALESCE), so no writer's fill undoes
    another's, and the rows are touched in key order (never two writers in a circle).
    """
    wanted: dict[str, dict[str, str | None]] = {}
    for journal in journals:
        key = journal_key(journal)
        if key is None:
            continue
        values = wanted.setdefault(key, dict.fromkeys(_COLUMNS))
        for name in _COLUMNS:
            if values[name] is None:
                values[name] = getattr(journal, name)
    if not wanted:
        return {}
    j = JOURNALS
    keys = sorted(wanted)
    stored = _stored_journals(conn, keys)
    missing = [key for key in keys if key not in stored]
    if missing:
        conn.execute(
            dialect_insert(conn, j).on_conflict_do_nothing(index_elements=[j.c.journal_key]),
            [{"journal_key": key, **wanted[key]} for key in missing],
        )
        stored.update(_stored_journals(conn, missing))  # ours, or what a writer beside this one added
    fills: list[dict[str, Any]] = []
    for key in keys:
        journal_id, known = stored[key]
        lacking = {name: wanted[key][name] for name in _COLUMNS if known[name] is None}
        if any(value is not None for value in lacking.values()):
            fills.append({"b_id": journal_id, **{f"b_{name}": wanted[key][name] for name in _COLUMNS}})
    if fills:
        filled = {name: sa.func.coalesce(j.c[name], sa.bindparam(f"b_{name}")) for name in _COLUMNS}
        conn.execute(sa.update(j).where(j.c.id == sa.bindparam("b_id")).values(filled), fills)
    return {key: journal_id for key, (journal_id, _known) in stored.items()}


def _stored_journals(conn: Connection, keys: list[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Journal id and attributes by key, of the keys stored."""
    j = JOURNALS
    columns = [j.c.journal_key, j.c.id, *(j.c[name] for name in _COLUMNS)]
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for chunk in chunks(keys):
        for key, journal_id, *values in conn.execute(sa.select(*columns).where(j.c.journal_key.in_(chunk))):
            found[key] = (journal_id, dict(zip(_COLUMNS, values, strict=True)))
    return found
