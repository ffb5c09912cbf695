"""Read-only queries that choose what a run works on: stored articles to enrich, and those due again."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, storage_error
from db.lookups import BACKOFF, Misses, is_due
from db.models import metadata

IN_CHUNK = 500
ARTICLES = metadata.tables["articles"]
SOURCE_RECORDS = metadata.tables["source_records"]
NOT_FOUND = "not_found"
LOOKUP_SOURCES = ("pmc", "crossref", "icite")  # the enrichment sources, in the order they are asked
_ASKED_BY = {"pmc": "pmcid", "crossref": "doi", "icite": "pmid"}  # the articles column each is asked by


@dataclass(frozen=True, slots=True)
class EnrichmentTarget:
    """A stored article and the ids its enrichment sources are asked by."""

    article_id: int
    pmid: str | None
    pmcid: str | None
    doi: str | None
    sources: frozenset[str] = frozenset(LOOKUP_SOURCES)  # the sources it is due for

    def asked_by(self, source: str) -> str | None:
        """The id ``source`` is asked by: PMCID for "pmc", DOI for "crossref", PMID for "icite"."""
        return {"pmc": self.pmcid, "crossref": self.doi, "icite": self.pmid}[source]


def enrichment_targets(engine: Engine, article_ids: Sequence[int]) -> list[EnrichmentTarget]:
    """The ids of these articles, in the order given (unknown ids are left out)."""
    a = ARTICLES
    found: dict[int, EnrichmentTarget] = {}
    try:
        with begin_read(engine) as conn:
            for chunk in _chunks(list(dict.fromkeys(article_ids))):
                query = sa.select(a.c.id, a.c.pmid, a.c.pmcid, a.c.doi).where(a.c.id.in_(chunk))
                for row in conn.execute(query):
                    found[row.id] = EnrichmentTarget(row.id, row.pmid, row.pmcid, row.doi)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read articles from", engine) from exc
    return [found[i] for i in dict.fromkeys(article_ids) if i in found]


def article_ids_by_pmid(engine: Engine, pmids: Sequence[str]) -> dict[str, int]:
    """Article ids of stored PMIDs."""
    a = ARTICLES
    ids: dict[str, int] = {}
    try:
        with begin_read(engine) as conn:
            for chunk in _chunks(list(dict.fromkeys(pmids))):
                query = sa.select(a.c.pmid, a.c.id).where(a.c.pmid.in_(chunk))
                ids.update({pmid: article_id for pmid, article_id in conn.execute(query)})
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read articles from", engine) from exc
    return ids


@dataclass(frozen=True, slots=True)
class Staleness:
    """When a source's kept record is due again: fetched before ``fetched_before``; with ``share=(slot,
    slots)`` only articles whose id is ``slot`` modulo ``slots`` are (a nightly run spreads them)."""

    fetched_before: datetime
    share: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class DueTargets:
    """What is due for enrichment: each target names the sources it is due for; ``backed_off`` counts,
    per source, the look-ups left out because the source said "not found" lately (db.lookups)."""

    targets: list[EnrichmentTarget]
    backed_off: dict[str, int]


def due_targets(
    engine: Engine,
    staleness: Mapping[str, Staleness],
    *,
    today: date,
    max_days: int,
    skip: Collection[int] = (),
) -> DueTargets:
    """Articles (not deleted) due for each source named in ``staleness``, each asked only of those.

    An article is due for a source when it has the id that source is asked by (PMCID for "pmc", DOI for
    "crossref", PMID for "icite") and:

    - the source was never asked; or
    - the source knew it and the kept record is stale (:class:`Staleness`: fetched before the time, and
      in the share); ``source_records.fetched_at`` is when the current record was first fetched, so an
      unchanged record keeps its first date (asking again costs requests, never writes); or
    - the source said "not found" and its back-off is over: asked again 1, 2, 4, ... days (at most
      ``max_days``) after the last "not found" day (:mod:`db.lookups`), counted on ``today``. An article
      whose "not found" came before the back-off was recorded (migration 0010) is due as a stale one.

    ``skip``: article ids left out (tonight's searches just enriched them).

    Raises:
        ValueError: a share that names no slot of its slots, or a source this does not know.
    """
    wanted: dict[int, set[str]] = {}
    ids: dict[int, tuple[str | None, str | None, str | None]] = {}
    backed_off: dict[str, int] = {}
    skipped = set(skip)
    try:
        with begin_read(engine) as conn:
            for source, stale in staleness.items():
                backed_off[source] = 0
                for row in conn.execute(_due_query(source, stale)):
                    if row.id in skipped:
                        continue
                    if row.status == NOT_FOUND and row.misses is not None:
                        misses = Misses(row.asked_id, row.first_missed, row.last_missed, row.misses)
                        if not is_due(misses, today=today, max_days=max_days):
                            backed_off[source] += 1
                            continue
                    wanted.setdefault(row.id, set()).add(source)
                    ids[row.id] = (row.pmid, row.pmcid, row.doi)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read articles from", engine) from exc
    targets = [EnrichmentTarget(i, *ids[i], sources=frozenset(wanted[i])) for i in sorted(wanted)]
    return DueTargets(targets, backed_off)


def _due_query(source: str, stale: Staleness) -> sa.Select[Any]:
    if source not in LOOKUP_SOURCES:
        raise ValueError(f"unknown enrichment source {source!r}")
    a, sr, lb = ARTICLES, SOURCE_RECORDS, BACKOFF
    asked_by = a.c[_ASKED_BY[source]]
    status = a.c[f"{source}_status"]
    rotation: sa.ColumnElement[bool] = sa.true()
    if stale.share is not None:
        slot, slots = stale.share
        if slots < 1 or not 0 <= slot < slots:
            raise ValueError(f"share must be (slot, slots) with 0 <= slot < slots, not {stale.share!r}")
        rotation = (a.c.id % slots) == slot
    old = sa.or_(sr.c.id.is_(None), sr.c.fetched_at < stale.fetched_before)
    backing_off = sa.and_(status == NOT_FOUND, lb.c.article_id.is_not(None))
    return (
        sa.select(
            a.c.id,
            a.c.pmid,
            a.c.pmcid,
            a.c.doi,
            status.label("status"),
            lb.c.asked_id,
            lb.c.first_missed,
            lb.c.last_missed,
            lb.c.misses,
        )
        .select_from(
            a.outerjoin(sr, sa.and_(sr.c.article_id == a.c.id, sr.c.source == source)).outerjoin(
                lb, sa.and_(lb.c.article_id == a.c.id, lb.c.source == source, lb.c.asked_id == asked_by)
            )
        )
        .where(
            a.c.deleted.is_(False),
            asked_by.is_not(None),
            sa.or_(status.is_(None), backing_off, sa.and_(old, rotation)),
        )
        .order_by(a.c.id)
        .distinct()
    )


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
