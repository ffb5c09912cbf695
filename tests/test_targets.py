"""Which stored articles are due for PMC, Crossref and iCite again, and for which of them
(db.targets.due_targets), with the look-up back-off (db.lookups), on both dialects.

Regression for the nightly stale pass: an unchanged record never moves its ``fetched_at``, so without a
rotation every article older than the cut-off was asked about again every night. Regression for issue 14
item 9: an article that a source did not know was asked again on every run, and of every source.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from db.lookups import Misses, is_due, read_misses, record_answers, wait_days
from db.reconcile import store_crossref, store_pmc
from db.store import store_articles
from db.targets import DueTargets, Staleness, article_ids_by_pmid, due_targets
from tests.db_helpers import crossref_work, pmc_front, pubmed_record, snapshot

OLD = datetime(2026, 1, 1, tzinfo=UTC)
CUTOFF = datetime(2026, 6, 1, tzinfo=UTC)
FRESH = datetime(2026, 11, 1, tzinfo=UTC)
DAY0 = date(2026, 11, 2)
STALE = Staleness(CUTOFF)
PMC_CROSSREF = {"pmc": STALE, "crossref": STALE}


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


def due(engine: Engine, staleness: dict[str, Staleness] | None = None, **kwargs: object) -> DueTargets:
    kwargs.setdefault("today", DAY0)
    kwargs.setdefault("max_days", 30)
    return due_targets(engine, staleness or PMC_CROSSREF, **kwargs)  # type: ignore[arg-type]


def sources_by_id(result: DueTargets) -> dict[int, set[str]]:
    return {t.article_id: set(t.sources) for t in result.targets}


def test_each_article_is_due_only_for_the_sources_never_asked_not_found_or_old(engine: Engine) -> None:
    ids = _stored(engine)
    assert sources_by_id(due(engine)) == {
        ids["old"]: {"pmc", "crossref"},
        ids["never"]: {"pmc", "crossref"},
        # Crossref said "not found" before the back-off was recorded: due as a stale record
        ids["not_found"]: {"crossref"},
        ids["old_crossref_only"]: {"crossref"},
    }
    [never] = [t for t in due(engine).targets if t.article_id == ids["never"]]
    assert (never.pmid, never.pmcid, never.doi) == ("1003", "PMC1003", "10.5555/never")


def test_icite_is_chosen_on_its_own_staleness(engine: Engine) -> None:
    ids = _stored(engine)
    result = due(engine, {"icite": STALE})
    # iCite was never asked about any of them: every article with a PMID is due, for iCite only
    assert sources_by_id(result) == {i: {"icite"} for i in ids.values()}
    assert result.backed_off == {"icite": 0}


def test_a_share_spreads_the_asked_ones_over_its_slots_and_keeps_the_never_asked(engine: Engine) -> None:
    ids = _stored(engine)
    slots = 4
    asked_before = {ids[n] for n in ("old", "not_found", "old_crossref_only")}
    seen: list[int] = []
    for slot in range(slots):
        share = Staleness(CUTOFF, share=(slot, slots))
        found = [t.article_id for t in due(engine, {"pmc": share, "crossref": share}).targets]
        assert ids["never"] in found  # never asked: due on every call
        assert ids["fresh"] not in found and ids["no_ids"] not in found
        rotating = [i for i in found if i != ids["never"]]
        assert all(i % slots == slot for i in rotating)
        seen.extend(rotating)
    # Over a full round of slots each article already asked is due exactly once.
    assert sorted(seen) == sorted(asked_before)


def test_a_share_must_name_a_slot_within_its_slots(engine: Engine) -> None:
    with pytest.raises(ValueError, match="share must be"):
        due(engine, {"pmc": Staleness(CUTOFF, share=(3, 3))})


def test_a_deleted_article_is_never_due(engine: Engine) -> None:
    from db.store import mark_deleted

    ids = _stored(engine)
    mark_deleted(engine, ["1001", "1003"], at=FRESH + timedelta(days=1))
    found = {t.article_id for t in due(engine, {**PMC_CROSSREF, "icite": STALE}).targets}
    assert ids["old"] not in found and ids["never"] not in found


def test_skipped_articles_are_left_out(engine: Engine) -> None:
    ids = _stored(engine)
    found = {t.article_id for t in due(engine, skip=[ids["old"], ids["never"]]).targets}
    assert found == {ids["not_found"], ids["old_crossref_only"]}


# ---- the back-off ----------------------------------------------------------------------------------


def _unknown_doi(engine: Engine) -> int:
    """An article with a DOI only, that Crossref said it does not know (the reconcile status)."""
    store_articles(engine, [pubmed_record("2001", doi="10.5555/gone", pmcid=None)], url=None, fetched_at=OLD)
    store_crossref(engine, [], url=None, fetched_at=OLD, run_id=None, not_found=["10.5555/gone"])
    return article_ids_by_pmid(engine, ["2001"])["2001"]


def _miss(engine: Engine, article: int, day: date, doi: str = "10.5555/gone") -> int:
    return record_answers(engine, "crossref", missed={article: doi}, found=(), today=day)


def _due_on(engine: Engine, day: date, max_days: int = 30) -> bool:
    result = due(engine, {"crossref": STALE}, today=day, max_days=max_days)
    assert len(result.targets) + result.backed_off["crossref"] == 1
    return bool(result.targets)


def test_wait_days_double_from_one_up_to_the_cap() -> None:
    assert [wait_days(n, 30) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert wait_days(10_000, 3650) == 3650 and wait_days(5, 0) == 0


def test_not_found_backs_off_1_2_4_days_and_the_same_day_writes_nothing(engine: Engine) -> None:
    article = _unknown_doi(engine)
    assert _miss(engine, article, DAY0) == 1  # 1st miss: due again on day 1
    before = snapshot(engine)
    assert _miss(engine, article, DAY0) == 0  # the same day's answer again: nothing written
    assert snapshot(engine) == before
    assert [_due_on(engine, DAY0 + timedelta(n)) for n in range(2)] == [False, True]
    assert _miss(engine, article, DAY0 + timedelta(1)) == 1  # 2nd: due on day 3
    assert [_due_on(engine, DAY0 + timedelta(n)) for n in range(1, 4)] == [False, False, True]
    assert _miss(engine, article, DAY0 + timedelta(3)) == 1  # 3rd: due on day 7
    assert [_due_on(engine, DAY0 + timedelta(n)) for n in (6, 7)] == [False, True]
    [misses] = read_misses(engine, "crossref", [article]).values()
    assert misses == Misses("10.5555/gone", DAY0, DAY0 + timedelta(3), 3)


def test_the_cap_holds_at_once_when_it_is_lowered(engine: Engine) -> None:
    article = _unknown_doi(engine)
    for n in range(7):  # 7 misses a week apart: 64 days' wait uncapped
        _miss(engine, article, DAY0 + timedelta(7 * n))
    last = DAY0 + timedelta(42)
    assert [_due_on(engine, last + timedelta(n)) for n in (29, 30)] == [False, True]  # capped at 30
    assert [_due_on(engine, last + timedelta(n), max_days=5) for n in (4, 5)] == [False, True]
    assert _due_on(engine, last, max_days=0)  # 0: no back-off, asked on every run


def test_a_found_answer_clears_the_backoff_and_a_repeat_found_writes_nothing(engine: Engine) -> None:
    article = _unknown_doi(engine)
    for n in range(3):
        _miss(engine, article, DAY0 + timedelta(n))
    assert record_answers(engine, "crossref", missed={}, found=[article], today=DAY0 + timedelta(3)) == 1
    assert read_misses(engine, "crossref", [article]) == {}
    before = snapshot(engine)
    assert record_answers(engine, "crossref", missed={}, found=[article], today=DAY0 + timedelta(4)) == 0
    assert snapshot(engine) == before
    _miss(engine, article, DAY0 + timedelta(5))  # not found again: back to a 1-day wait
    assert [_due_on(engine, DAY0 + timedelta(n)) for n in (5, 6)] == [False, True]


def test_the_backoff_holds_only_for_the_id_that_was_not_found(engine: Engine) -> None:
    article = _unknown_doi(engine)
    _miss(engine, article, DAY0, doi="10.5555/an-older-doi")  # the article's DOI has changed since
    assert _due_on(engine, DAY0)  # its DOI now was never missed: due as a stale record
    assert _miss(engine, article, DAY0) == 1  # the new DOI starts its own count
    assert read_misses(engine, "crossref", [article])[article] == Misses("10.5555/gone", DAY0, DAY0, 1)
    assert not _due_on(engine, DAY0)


def test_backoff_rows_are_per_source(engine: Engine) -> None:
    article = _unknown_doi(engine)
    record_answers(engine, "icite", missed={article: "2001"}, found=(), today=DAY0)
    assert _due_on(engine, DAY0)  # iCite's miss is not Crossref's
    assert is_due(read_misses(engine, "icite", [article])[article], today=DAY0 + timedelta(1), max_days=30)
