"""Read-only queries that choose what a run works on: stored articles to enrich, and stale ones."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, storage_error
from db.models import metadata

IN_CHUNK = 500
ARTICLES = metadata.tables["articles"]
SOURCE_RECORDS = metadata.tables["source_records"]


@dataclass(frozen=True, slots=True)
class EnrichmentTarget:
    """A stored article and the ids its enrichment sources are asked by."""

    article_id: int
    pmid: str | None
    pmcid: str | None
    doi: str | None


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


def stale_article_ids(
    engine: Engine, *, fetched_before: datetime, share: tuple[int, int] | None = None
) -> list[int]:
    """Articles (not deleted) due for PMC or Crossref: never asked, or asked and their record is missing
    (not found) or was fetched before the time.

    An article with a PMCID is due for PMC, one with a DOI for Crossref; ``source_records.fetched_at`` is
    when the current record of a source was first fetched, so unchanged records keep their first date
    (asking again costs requests, never writes). Without ``share`` every such article is due on every
    call. With ``share=(slot, slots)`` the articles already asked are spread over ``slots`` calls: only
    those whose id is ``slot`` modulo ``slots`` are due (never-asked ones always are), so a nightly run
    with ``slots`` = the stale age asks about each stale article about once per that many nights instead
    of every night.
    """
    a, sr = ARTICLES, SOURCE_RECORDS
    pmc = sr.alias("pmc")
    crossref = sr.alias("crossref")
    rotation: sa.ColumnElement[bool] = sa.true()
    if share is not None:
        slot, slots = share
        if slots < 1 or not 0 <= slot < slots:
            raise ValueError(f"share must be (slot, slots) with 0 <= slot < slots, not {share!r}")
        rotation = (a.c.id % slots) == slot

    def due(record: Any, status: sa.Column[Any]) -> sa.ColumnElement[bool]:
        asked_and_old = sa.or_(record.c.id.is_(None), record.c.fetched_at < fetched_before)
        return sa.or_(status.is_(None), sa.and_(asked_and_old, rotation))

    query = (
        sa.select(a.c.id)
        .select_from(
            a.outerjoin(pmc, sa.and_(pmc.c.article_id == a.c.id, pmc.c.source == "pmc")).outerjoin(
                crossref, sa.and_(crossref.c.article_id == a.c.id, crossref.c.source == "crossref")
            )
        )
        .where(
            a.c.deleted.is_(False),
            sa.or_(
                sa.and_(a.c.pmcid.is_not(None), due(pmc, a.c.pmc_status)),
                sa.and_(a.c.doi.is_not(None), due(crossref, a.c.crossref_status)),
            ),
        )
        .order_by(a.c.id)
        .distinct()
    )
    try:
        with begin_read(engine) as conn:
            return [row[0] for row in conn.execute(query)]
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read articles from", engine) from exc


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
