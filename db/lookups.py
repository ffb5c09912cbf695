"""The look-up back-off: which source said "not found" for which article, and when it is asked again.

A table of its own, ``lookup_backoff`` (migration 0010), one row per (article, source) while the source
keeps not knowing the article, so that recording a repeated "not found" never writes the article: an
unchanged re-harvest stays free of writes. The row counts *days* with a "not found" answer (a second
answer on the same day writes nothing) and is deleted by a "found" answer.

After the n-th such day the source is due again :func:`wait_days` (1, 2, 4, ... days, at most the cap,
``[enrich] not_found_max_days``) after it; :func:`is_due` says whether that day has come. The cap is
applied when reading, so a changed setting holds at once for every row.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, begin_write, storage_error
from db.models import metadata

BACKOFF = metadata.tables["lookup_backoff"]
IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Misses:
    """A source's run of "not found" answers for one article."""

    asked_id: str  # the PMCID, DOI or PMID it did not know
    first_missed: date
    last_missed: date
    misses: int  # days with a "not found" answer


def wait_days(misses: int, max_days: int) -> int:
    """Days after the last of ``misses`` "not found" days before the source is asked again: 1, 2, 4, 8,
    ... at most ``max_days`` (0: no wait; no misses: no wait)."""
    if misses < 1 or max_days < 1:
        return 0
    return int(min(2 ** min(misses - 1, 20), max_days))


def next_due(misses: Misses, max_days: int) -> date:
    """The first day the source is asked again by the runs that honour the back-off."""
    return misses.last_missed + timedelta(days=wait_days(misses.misses, max_days))


def is_due(misses: Misses, *, today: date, max_days: int) -> bool:
    """Whether the wait after these misses is over on ``today``."""
    return next_due(misses, max_days) <= today


def read_misses(engine: Engine, source: str, article_ids: Collection[int]) -> dict[int, Misses]:
    """The back-off rows of these articles for one source.

    Raises:
        StorageError: the database could not be read.
    """
    try:
        with begin_read(engine) as conn:
            return _read(conn, source, sorted(set(article_ids)))
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read the look-up back-off from", engine) from exc


def record_answers(
    engine: Engine,
    source: str,
    *,
    missed: Mapping[int, str],
    found: Collection[int],
    today: date,
) -> int:
    """Record what a source answered about articles; returns the rows written (0 most of the time).

    Args:
        source: "pmc", "crossref" or "icite".
        missed: article id -> the id the source did not know (its PMCID, DOI or PMID).
        found: article ids the source knew: their back-off, if any, is deleted.
        today: the (UTC) day of the answer; a second "not found" on the same day writes nothing.

    Nothing is written, and no write transaction is begun, unless a row must change: a first miss, a
    miss on a later day (or of another id), or a "found" that ends a run of misses. The rows are read
    again under the writers' lock before they are written, so two processes that get the same answer
    on the same day count it once.

    Raises:
        StorageError: the database could not be read or written (nothing of this call was written).
    """
    article_ids = sorted({*missed, *found})
    if not article_ids:
        return 0
    if not _plan(read_misses(engine, source, article_ids), missed, found, today):
        return 0
    try:
        with begin_write(engine) as conn:
            changes = _plan(_read(conn, source, article_ids), missed, found, today)
            _write(conn, source, changes)
            return len(changes)
    except DBAPIError as exc:
        raise storage_error(exc, "cannot record the look-up back-off in", engine) from exc


@dataclass(frozen=True, slots=True)
class _Change:
    article_id: int
    row: Misses | None  # None: delete the row
    new: bool  # insert rather than update


def _plan(
    known: Mapping[int, Misses], missed: Mapping[int, str], found: Collection[int], today: date
) -> list[_Change]:
    changes: list[_Change] = []
    for article_id, asked_id in missed.items():
        old = known.get(article_id)
        if old is None or old.asked_id != asked_id:  # a first miss (of this id): the wait starts at 1 day
            changes.append(_Change(article_id, Misses(asked_id, today, today, 1), new=old is None))
        elif old.last_missed < today:
            row = Misses(asked_id, old.first_missed, today, old.misses + 1)
            changes.append(_Change(article_id, row, new=False))
    changes.extend(_Change(a, None, new=False) for a in found if a in known and a not in missed)
    return changes


def _write(conn: Connection, source: str, changes: Sequence[_Change]) -> None:
    t = BACKOFF
    rows = [
        {
            "b_article_id": c.article_id,
            "b_asked_id": c.row.asked_id,
            "b_first_missed": c.row.first_missed,
            "b_last_missed": c.row.last_missed,
            "b_misses": c.row.misses,
        }
        for c in changes
        if c.row is not None
    ]
    values: dict[str, Any] = {
        "asked_id": sa.bindparam("b_asked_id"),
        "first_missed": sa.bindparam("b_first_missed"),
        "last_missed": sa.bindparam("b_last_missed"),
        "misses": sa.bindparam("b_misses"),
    }
    new = {c.article_id for c in changes if c.new}
    inserts = [r for r in rows if r["b_article_id"] in new]
    updates = [r for r in rows if r["b_article_id"] not in new]
    if inserts:
        conn.execute(
            sa.insert(t).values(article_id=sa.bindparam("b_article_id"), source=source, **values), inserts
        )
    if updates:
        query = sa.update(t).where(t.c.article_id == sa.bindparam("b_article_id"), t.c.source == source)
        conn.execute(query.values(**values), updates)
    gone = sorted(c.article_id for c in changes if c.row is None)
    for chunk in _chunks(gone):
        conn.execute(sa.delete(t).where(t.c.source == source, t.c.article_id.in_(chunk)))


def _read(conn: Connection, source: str, article_ids: Sequence[int]) -> dict[int, Misses]:
    t = BACKOFF
    out: dict[int, Misses] = {}
    for chunk in _chunks(article_ids):
        query = sa.select(t.c.article_id, t.c.asked_id, t.c.first_missed, t.c.last_missed, t.c.misses).where(
            t.c.source == source, t.c.article_id.in_(chunk)
        )
        for row in conn.execute(query):
            out[row.article_id] = Misses(row.asked_id, row.first_missed, row.last_missed, row.misses)
    return out


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
