"""Which stored articles are due for PMC or Crossref again (db.targets.stale_article_ids), on both dialects.

Regression for the nightly stale pass: an unchanged record never moves its ``fetched_at``, so without a
rotation every article older than the cut-off was asked about again every night.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from db.reconcile import store_crossref, store_pmc
from db.store import store_articles
from db.targets import article_ids_by_pmid, stale_article_ids
from tests.db_helpers import crossref_work, pmc_front, pubmed_record

OLD = datetime(2026, 1, 1, tzinfo=UTC)
CUTOFF = datetime(2026, 6, 1, tzinfo=UTC)
FRESH = datetime(2026, 11, 1, tzinfo=UTC)


def _stored(engine: Engine) -> dict[str, int]:
    """Six articles in every state a source can be in; their article ids by name."""
    records = {
        "old": pubmed_record("1001", doi="10.5555/old", pmcid="PMC1001"),
        "fresh": pubmed_record("1002", doi="10.5555/fresh", pmcid="PMC1002"),
        "never": pubmed_record("1003", doi="10.5555/never", pmcid="PMC1003"),
        "not_found": pubmed_record("1004", doi="10.5555/nf", pmcid=None),
        "no_ids": pubmed_record("1005", doi=None, pmcid=None),
        "old_crossref_only": pubmed_record("1006", doi="10.5555/oco", pmcid=None),
    }
    store_articles(engine, list(records.values()), url=None, fetched_at=OLD)
    for pmcid, pmid, doi, at in (
        ("PMC1001", "1001", "10.5555/old", OLD),
        ("PMC1002", "1002", "10.5555/fresh", FRESH),
    ):
        store_pmc(engine, [pmc_front(pmcid, pmid=pmid, doi=doi)], url=None, fetched_at=at, run_id=None)
    for doi, at in (("10.5555/old", OLD), ("10.5555/fresh", FRESH), ("10.5555/oco", OLD)):
        store_crossref(engine, [crossref_work(doi)], url=None, fetched_at=at, run_id=None)
    store_crossref(engine, [], url=None, fetched_at=OLD, run_id=None, not_found=["10.5555/nf"])
    ids = article_ids_by_pmid(engine, [r.pmid for r in records.values()])
    return {name: ids[record.pmid] for name, record in records.items()}


def test_due_without_a_share_are_never_asked_not_found_and_old(engine: Engine) -> None:
    ids = _stored(engine)
    due = stale_article_ids(engine, fetched_before=CUTOFF)
    assert due == sorted(ids[n] for n in ("old", "never", "not_found", "old_crossref_only"))


def test_a_share_spreads_the_asked_ones_over_its_slots_and_keeps_the_never_asked(engine: Engine) -> None:
    ids = _stored(engine)
    slots = 4
    asked_before = {ids[n] for n in ("old", "not_found", "old_crossref_only")}
    seen: list[int] = []
    for slot in range(slots):
        due = stale_article_ids(engine, fetched_before=CUTOFF, share=(slot, slots))
        assert ids["never"] in due  # never asked: due on every call
        assert ids["fresh"] not in due and ids["no_ids"] not in due
        rotating = [i for i in due if i != ids["never"]]
        assert all(i % slots == slot for i in rotating)
        seen.extend(rotating)
    # Over a full round of slots each article already asked is due exactly once.
    assert sorted(seen) == sorted(asked_before)


def test_a_share_must_name_a_slot_within_its_slots(engine: Engine) -> None:
    with pytest.raises(ValueError, match="share must be"):
        stale_article_ids(engine, fetched_before=CUTOFF, share=(3, 3))


def test_a_deleted_article_is_never_due(engine: Engine) -> None:
    from db.store import mark_deleted

    ids = _stored(engine)
    mark_deleted(engine, ["1001", "1003"], at=FRESH + timedelta(days=1))
    due = stale_article_ids(engine, fetched_before=CUTOFF)
    assert ids["old"] not in due and ids["never"] not in due
