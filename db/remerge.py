"""Re-merging: stored articles merged again from the stored payloads of their sources, and what differs
written.

An article is merged from the current payload of each of its sources (PubMed, PMC, Crossref; the latest
record of each), parsed back from raw_payloads (:func:`enrich.payloads.parse_payload`), so a merge never
fetches; what is stored is the merge's ``stored`` input, so a source that omits a field never erases it
(:mod:`enrich.merge`). The journal fields (journal_title, journal_iso_abbrev, issn) choose a journals row
as a group: the source that decides journal_title (else issn) decides the journal, keyed as
:func:`db.journals.journal_key` keys journals. The differences are written by :mod:`db.article_writes`.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from db.article_state import ArticleState, load_states
from db.article_writes import Writes, apply_writes, creation_change, diff_article
from db.conflicts import ConflictInfo
from db.journals import JOURNAL_FIELDS, journal_facts, journal_key, resolve_journals
from enrich.merge import (
    Merged,
    Provenance,
    SourceView,
    merge,
    view_of_crossref,
    view_of_pmc,
    view_of_pubmed,
)
from enrich.payloads import parse_payload
from enrich.records import CrossrefWork, PmcFront
from harvester.core.errors import HarvestError
from harvester.core.records import Article, Journal

logger = logging.getLogger(__name__)


def remerge(
    conn: Connection,
    ids: Sequence[int],
    *,
    policy: Mapping[str, Sequence[str]],
    run_id: int | None,
    now: datetime,
    created: set[int],
    raws: Mapping[tuple[str, str], bytes],
) -> tuple[set[int], list[ConflictInfo]]:
    """Merge these articles from their sources' current payloads and write what differs.

    ``raws`` are payloads just kept, by (source, source_id), so they need not be read back. Returns the
    ids of the articles written and the conflicts met (none since DOIs and PMCIDs may be shared).
    """
    if not ids:
        return set(), []
    states = load_states(conn, ids, payloads=True)
    merged: dict[int, Merged] = {}
    records: dict[int, dict[str, Any]] = {}
    for article_id in ids:
        state = states[article_id]
        views, parsed = _views(state, raws)
        records[article_id] = parsed
        merged[article_id] = merge(views, policy, state.stored())
    conflicts: list[ConflictInfo] = []  # DOI and PMCID are not unique: a merge meets no conflict
    journals = _journal_targets(states, merged, records)
    journal_ids = resolve_journals(conn, [target for target, _, _ in journals.values() if target is not None])
    writes = Writes()
    for article_id in ids:
        history = article_id not in created
        if not history:  # the creation itself is history's first row; the values it came with are not
            writes.history.append(creation_change(states[article_id]))
        diff_article(
            states[article_id], merged[article_id], journals[article_id], journal_ids, writes, history
        )
    apply_writes(conn, writes, now=now, run_id=run_id)
    return writes.touched, conflicts


def _views(
    state: ArticleState, raws: Mapping[tuple[str, str], bytes]
) -> tuple[list[SourceView], dict[str, Any]]:
    """A view of each source's current record, parsed from its payload; and the parsed records.

    A payload that does not parse (kept by an older parser, say) is represented by the stored values it
    gave, so that it keeps its place in the policy instead of yielding to the next source.
    """
    views: list[SourceView] = []
    parsed: dict[str, Any] = {}
    for source, rec in state.sources.items():
        raw = raws.get((source, rec.source_id))
        if raw is None and rec.content is not None:
            raw = gzip.decompress(rec.content)
        record: Article | PmcFront | CrossrefWork | None = None
        try:
            record = parse_payload(source, raw) if raw is not None else None
        except HarvestError as exc:
            logger.warning(
                "article %d: the stored %s record %s does not parse, its stored values stand in: %s",
                state.article_id,
                source,
                rec.source_id,
                exc,
            )
        if isinstance(record, Article):
            views.append(view_of_pubmed(record, rec.fetched_at))
        elif isinstance(record, PmcFront):
            views.append(view_of_pmc(record, rec.fetched_at))
        elif isinstance(record, CrossrefWork):
            views.append(view_of_crossref(record, rec.fetched_at))
        else:
            given = {name: v for name, v in state.values.items() if state.provenance(name).source == source}
            views.append(SourceView(source, rec.source_id, rec.fetched_at, given))
            continue
        parsed[source] = record
    return views, parsed


def _journal_targets(
    states: Mapping[int, ArticleState], merged: Mapping[int, Merged], records: Mapping[int, Mapping[str, Any]]
) -> dict[int, tuple[Journal | None, Provenance | None, str | None]]:
    """The journal each article should point at (None: leave it), the provenance of the choice, and the
    article's own journal facts (``articles.journal_facts``) as the deciding record gives them (None:
    leave them)."""
    targets: dict[int, tuple[Journal | None, Provenance | None, str | None]] = {}
    for article_id, result in merged.items():
        deciding = next((name for name in JOURNAL_FIELDS if name in result.values), None)
        if deciding is None:
            targets[article_id] = (None, None, None)
            continue
        origin = result.provenance[deciding]
        record = records[article_id].get(origin.source)
        journal: Journal | None = None
        if isinstance(record, Article):
            journal = record.journal
        elif isinstance(record, CrossrefWork):
            typed = record.issn_print or record.issn_electronic
            journal = Journal(
                title=record.container_title,
                iso_abbrev=record.short_container_title,
                issn_print=record.issn_print,
                issn_electronic=record.issn_electronic,
                issn_linking=None if typed else (record.issns[0] if record.issns else None),
            )
        elif isinstance(record, PmcFront):  # JATS ISSNs come untyped here: the first links the journal
            journal = Journal(
                title=record.journal_title, issn_linking=record.issns[0] if record.issns else None
            )
        facts = journal_facts(journal)
        key = journal_key(journal) if journal is not None else None
        if key is None or key == states[article_id].journal_key:
            journal = None
        targets[article_id] = (journal, origin, facts)
    return targets
