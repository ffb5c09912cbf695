"""Conflicts: recorded, told in words, and settled by hand (``harvest conflicts``, ``harvest conflicts
resolve``).

A conflict is an incoming record whose identifiers point at two or more stored articles that it would
merge into one (see db.matching and db.store; a DOI or PMCID two PubMed records share is not one). A PMC
or Crossref record's conflict is recorded once (:func:`record_conflicts`: a rerun finds it there), and
resolved ("matched") when the record later matches its articles; a conflict settled by hand is never
reopened. A person settles it:

- ``keep``: the record belongs to this article (one of those the conflict names). A PMC or Crossref
  record is attached to it at once from its kept payload and merged (and from then on it matches only
  that article); its other articles are merged again without it. A PubMed record always stays its own
  article (the PMID is its key): keeping its own PMID leaves the others as they are; keeping an article
  not in PubMed merges that article into the record's (its PMC and Crossref records and its history
  move over, the row is deleted).
- ``ignore``: the record stays unmerged and is not reported again while it names the same articles.

Either way the conflict row gets status, resolution, kept article and time, and each article named gets
an article_history row (field "conflict", source "user").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, begin_write, storage_error
from db.inserts import chunks
from db.models import metadata
from harvester.core.errors import UsageError

_T = metadata.tables
ARTICLES = _T["articles"]
CONFLICTS = _T["conflicts"]
HISTORY = _T["article_history"]
SOURCE_RECORDS = _T["source_records"]
RAW_PAYLOADS = _T["raw_payloads"]
STATUSES = ("open", "resolved", "ignored")
USER = "user"  # the source of history rows a person's decision writes

_ID_WORDS = {"pmid": "PMID", "pmcid": "PMCID", "doi": "DOI"}


@dataclass(frozen=True, slots=True)
class ConflictInfo:
    """A record whose ids point at several stored articles: ``claims`` are (id_type, value, article_id)."""

    source: str
    source_id: str
    article_ids: tuple[int, ...]
    claims: tuple[tuple[str, str, int], ...]


def record_conflicts(
    conn: Connection, conflicts: Sequence[ConflictInfo], *, now: datetime, run_id: int | None
) -> None:
    """Insert the conflicts not recorded yet; one recorded before and resolved since is open again."""
    if not conflicts:
        return
    c = CONFLICTS
    source = conflicts[0].source
    known: dict[tuple[str, str], tuple[int, str]] = {}
    for chunk in chunks(sorted({info.source_id for info in conflicts})):
        query = sa.select(c.c.source_id, c.c.article_ids, c.c.id, c.c.status).where(
            c.c.source == source, c.c.source_id.in_(chunk)
        )
        known.update({(row.source_id, row.article_ids): (row.id, row.status) for row in conn.execute(query)})
    rows: list[dict[str, Any]] = []
    reopened: list[int] = []
    for info in conflicts:
        key = (info.source_id, ",".join(map(str, info.article_ids)))
        if key in known:
            if known[key][1] == "resolved":  # resolved by a later match; settled by hand is never reopened
                reopened.append(known[key][0])
            continue
        known[key] = (0, "open")
        claims = [{"id_type": t, "value": v, "article_id": article_id} for t, v, article_id in info.claims]
        rows.append(
            {
                "source": info.source,
                "source_id": info.source_id,
                "claims": json.dumps(claims, ensure_ascii=False),
                "article_ids": key[1],
                "status": "open",
                "detected_at": now,
                "run_id": run_id,
            }
        )
    if rows:
        conn.execute(sa.insert(c), rows)
    for chunk in chunks(reopened):
        conn.execute(
            sa.update(c).where(c.c.id.in_(chunk)).values(status="open", resolution=None, resolved_at=None)
        )


def resolve_matched_conflicts(
    conn: Connection, source: str, source_ids: Sequence[str], *, now: datetime
) -> None:
    """Open conflicts of records that now match their articles are resolved (read first: usually none)."""
    c = CONFLICTS
    ids: list[int] = []
    for chunk in chunks(sorted(set(source_ids))):
        query = sa.select(c.c.id).where(c.c.source == source, c.c.status == "open", c.c.source_id.in_(chunk))
        ids.extend(conn.execute(query).scalars())
    for chunk in chunks(ids):
        conn.execute(
            sa.update(c)
            .where(c.c.id.in_(chunk))
            .values(status="resolved", resolution="matched", resolved_at=now)
        )


def list_conflicts(engine: Engine, status: str | None = "open") -> list[dict[str, Any]]:
    """Recorded conflicts, oldest first: of a status ("open", "resolved", "ignored"), or all (None, "all").

    Each is a dict of plain values: id, source, source_id, status, resolution, kept_pmid,
    kept_article_id, resolved_at, detected_at, run_id, article_ids, ``claims`` (id_type, value and the
    article: article_id, pmid, title) and ``description``, the conflict in one line of words.

    Raises:
        StorageError: the database could not be read.
    """
    c = CONFLICTS
    query = sa.select(c).order_by(c.c.id)
    if status not in (None, "all"):
        query = query.where(c.c.status == status)
    try:
        with begin_read(engine) as conn:
            rows = list(conn.execute(query))
            ids = {int(i) for row in rows for i in row.article_ids.split(",")}
            ids |= {row.kept_article_id for row in rows if row.kept_article_id is not None}
            articles = _articles(conn, ids)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read", engine) from exc
    found = []
    for row in rows:
        claims = [
            {
                "id_type": claim["id_type"],
                "value": claim["value"],
                "article_id": claim["article_id"],
                "pmid": articles.get(claim["article_id"], {}).get("pmid"),
                "title": articles.get(claim["article_id"], {}).get("title"),
            }
            for claim in json.loads(row.claims)
        ]
        kept = articles.get(row.kept_article_id) if row.kept_article_id is not None else None
        found.append(
            {
                "id": row.id,
                "source": row.source,
                "source_id": row.source_id,
                "status": row.status,
                "resolution": row.resolution,
                "kept_article_id": row.kept_article_id,
                "kept_pmid": kept["pmid"] if kept else None,
                "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
                "detected_at": row.detected_at.isoformat(),
                "run_id": row.run_id,
                "article_ids": [int(i) for i in row.article_ids.split(",")],
                "claims": claims,
                "description": describe(row.source, row.source_id, claims),
            }
        )
    return found


def describe(source: str, source_id: str, claims: Sequence[dict[str, Any]]) -> str:
    """A conflict in words: 'crossref DOI 10.1/x names DOI 10.1/x of PMID 12 "Title" and ...'."""
    parts = [
        f"{_ID_WORDS.get(c['id_type'], c['id_type'])} {c['value']} of {article_words(c)}" for c in claims
    ]
    record = f"{source} {_ID_WORDS['pmid'] + ' ' if source == 'pubmed' else ''}{source_id}"
    return f"{record} names " + "; ".join(parts)


def describe_found(engine: Engine, conflicts: Sequence[ConflictInfo]) -> list[str]:
    """The conflicts a run just met, in words (PMIDs and titles of the stored articles, as ``harvest
    conflicts`` lists them), for the run's own error lines."""
    if not conflicts:
        return []
    with begin_read(engine) as conn:
        articles = _articles(conn, {article_id for c in conflicts for _t, _v, article_id in c.claims})
    return [
        describe(
            c.source,
            c.source_id,
            [
                {"id_type": id_type, "value": value, **articles.get(article_id, {"article_id": article_id})}
                for id_type, value, article_id in c.claims
            ],
        )
        + " (see 'harvest conflicts')"
        for c in conflicts
    ]


def article_words(article: dict[str, Any]) -> str:
    """'PMID 12 "Title"', or 'article 7 (not in PubMed) "Title"'."""
    who = (
        f"PMID {article['pmid']}"
        if article.get("pmid")
        else f"article {article['article_id']} (not in PubMed)"
    )
    title = article.get("title")
    if title:
        short = title if len(title) <= 80 else title[:77] + "..."
        who += f' "{short}"'
    return who


def resolve_conflict(
    engine: Engine,
    conflict_id: int,
    *,
    keep: str | None = None,
    ignore: bool = False,
    run_id: int | None = None,
) -> dict[str, Any]:
    """Settle a conflict by hand: ``keep`` an article (a PMID, or "article:ID" for one not in PubMed), or
    ``ignore`` it. Returns the conflict as :func:`list_conflicts` gives it, settled.

    Raises:
        UsageError: no such conflict, already settled, neither or both of keep and ignore, or an article
            the conflict does not name.
        StorageError: the database could not be written.
    """
    if (keep is None) == (not ignore):
        raise UsageError("give either --keep ARTICLE or --ignore")
    now = datetime.now(UTC)
    merge_again: list[int] = []
    c = CONFLICTS
    try:
        with begin_write(engine) as conn:
            row = conn.execute(sa.select(c).where(c.c.id == conflict_id)).one_or_none()
            if row is None:
                raise UsageError(f"no conflict #{conflict_id}: see 'harvest conflicts --status all'")
            if row.status == "resolved":
                raise UsageError(f"conflict #{conflict_id} is already resolved ({row.resolution})")
            named = [int(i) for i in row.article_ids.split(",")]
            kept = _kept_article(conn, keep, named) if keep is not None else None
            if kept is not None:
                merge_again = _apply_keep(conn, row, kept, named)
                if row.source == "pubmed" and merge_again:  # the kept article was merged into the record's
                    kept = merge_again[0]
            values = {
                "status": "ignored" if ignore else "resolved",
                "resolution": "ignored" if ignore else "kept",
                "kept_article_id": kept,
                "resolved_at": now,
            }
            conn.execute(sa.update(c).where(c.c.id == conflict_id).values(**values))
            decision = {
                "conflict": conflict_id,
                "record": f"{row.source} {row.source_id}",
                "decision": values["resolution"],
                "kept_article_id": kept,
            }
            live = set(conn.execute(sa.select(ARTICLES.c.id).where(ARTICLES.c.id.in_(named))).scalars())
            conn.execute(
                sa.insert(HISTORY),
                [
                    {
                        "article_id": article_id,
                        "field": "conflict",
                        "old_value": None,
                        "new_value": json.dumps(decision, sort_keys=True),
                        "source": USER,
                        "run_id": run_id,
                        "changed_at": now,
                    }
                    for article_id in named
                    if article_id in live
                ],
            )
    except DBAPIError as exc:
        raise storage_error(exc, "cannot settle a conflict in", engine) from exc
    if merge_again:
        from db.reconcile import reconcile_articles  # not at the top: db.reconcile imports this module

        reconcile_articles(engine, merge_again, run_id=run_id)
    [settled] = [found for found in list_conflicts(engine, status="all") if found["id"] == conflict_id]
    return settled


def _articles(conn: Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
    a = ARTICLES
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks(sorted(ids)):
        for article_id, pmid, title in conn.execute(
            sa.select(a.c.id, a.c.pmid, a.c.title).where(a.c.id.in_(chunk))
        ):
            found[article_id] = {"article_id": article_id, "pmid": pmid, "title": title}
    return found


def _kept_article(conn: Connection, keep: str, named: Sequence[int]) -> int:
    text = keep.strip()
    a = ARTICLES
    if text.lower().startswith("article:") and text[8:].strip().isdigit():
        article_id: int | None = int(text[8:])
    elif text.isdigit():
        article_id = conn.execute(sa.select(a.c.id).where(a.c.pmid == text.lstrip("0"))).scalar_one_or_none()
    else:
        raise UsageError(f"--keep takes a PMID or article:ID (an article not in PubMed), not {keep!r}")
    if article_id is None or article_id not in named:
        raise UsageError(f"--keep {keep}: not one of the articles this conflict names")
    return article_id


def _apply_keep(conn: Connection, row: Any, kept: int, named: Sequence[int]) -> list[int]:
    """Make the decision true in the stored data; returns the articles to merge again."""
    sr, p, a = SOURCE_RECORDS, RAW_PAYLOADS, ARTICLES
    if row.source == "pubmed":
        own = conn.execute(sa.select(a.c.id).where(a.c.pmid == row.source_id)).scalar_one_or_none()
        if own is None or kept == own:
            return []
        kept_pmid = conn.execute(sa.select(a.c.pmid).where(a.c.id == kept)).scalar_one()
        if kept_pmid is not None:
            raise UsageError(
                "a PubMed record stays its own article: --keep its PMID or an article not in PubMed"
            )
        _merge_into(conn, kept, own)
        return [own]
    payload = conn.execute(
        sa.select(p.c.id, p.c.fetched_at)
        .where(p.c.source == row.source, p.c.source_id == row.source_id)
        .order_by(p.c.fetched_at.desc(), p.c.id.desc())
        .limit(1)
    ).one_or_none()
    if payload is None:  # recorded before its payload was kept: the next look-up applies the decision
        return []
    others = [i for i in named if i != kept]
    conn.execute(
        sa.delete(sr).where(
            sr.c.source == row.source, sr.c.source_id == row.source_id, sr.c.article_id != kept
        )
    )
    exists = conn.execute(
        sa.select(sr.c.id).where(
            sr.c.source == row.source, sr.c.source_id == row.source_id, sr.c.article_id == kept
        )
    ).scalar_one_or_none()
    if exists is None:
        conn.execute(
            sa.insert(sr).values(
                article_id=kept,
                source=row.source,
                source_id=row.source_id,
                payload_id=payload.id,
                fetched_at=payload.fetched_at,
            )
        )
    status = {"pmc": "pmc_status", "crossref": "crossref_status"}.get(row.source)
    if status:
        conn.execute(sa.update(a).where(a.c.id == kept).values({status: "found"}))
    return [kept, *others]


def _merge_into(conn: Connection, orphan: int, own: int) -> None:
    """An article not in PubMed merged into a PubMed record's article: its other sources and history move."""
    sr, h, a = SOURCE_RECORDS, HISTORY, ARTICLES
    taken = {
        (source, source_id)
        for source, source_id in conn.execute(
            sa.select(sr.c.source, sr.c.source_id).where(sr.c.article_id == own)
        )
    }
    for record_id, source, source_id in conn.execute(
        sa.select(sr.c.id, sr.c.source, sr.c.source_id).where(sr.c.article_id == orphan)
    ).all():
        if (source, source_id) not in taken:
            conn.execute(sa.update(sr).where(sr.c.id == record_id).values(article_id=own))
    conn.execute(sa.update(h).where(h.c.article_id == orphan).values(article_id=own))
    statuses = conn.execute(sa.select(a.c.pmc_status, a.c.crossref_status).where(a.c.id == orphan)).one()
    conn.execute(
        sa.update(a)
        .where(a.c.id == own)
        .values(
            pmc_status=sa.func.coalesce(a.c.pmc_status, statuses.pmc_status),
            crossref_status=sa.func.coalesce(a.c.crossref_status, statuses.crossref_status),
        )
    )
    c = CONFLICTS
    conn.execute(sa.update(c).where(c.c.kept_article_id == orphan).values(kept_article_id=own))
    conn.execute(sa.delete(a).where(a.c.id == orphan))
