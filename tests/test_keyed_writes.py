"""Writers side by side on PostgreSQL (issue 12): a batch of the PubMed store locks only the ranges of
PMIDs it holds, so the workers of the ingest queue store different files at once, while a writer of the
whole lock (reconciliation, deletions, a batch of scattered PMIDs) still has the database to itself.

Each check holds one transaction open and asks a second engine, whose lock timeout is short, for what it
may and may not take meanwhile: a refusal is the server's lock timeout, not a measured wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.engine import begin_keyed_write, begin_write, open_database
from db.journals import resolve_journals
from db.store import PMID_RANGE, store_articles
from harvester.core.errors import StorageError
from harvester.core.records import Journal
from tests.db_helpers import fresh_database_url, open_migrated, pubmed_record

pytestmark = pytest.mark.postgres
SECOND = "harvest-test-keyed-second"  # the second engine's sessions, as pg_stat_activity names them
AT = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.fixture
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one fresh PostgreSQL schema; the second gives up on a lock after 0.5 s."""
    with fresh_database_url("postgresql", tmp_path_factory.mktemp("keyed")) as url:
        first = open_migrated(url)
        second = open_database(f"{url}&application_name={SECOND}", busy_timeout=0.5)
        try:
            yield first, second
        finally:
            second.dispose()
            first.dispose()


def _takes_keyed(engine: Engine, keys: set[int]) -> bool:
    try:
        with begin_keyed_write(engine, keys) as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:  # lock_timeout: the server refused to wait longer
        return False


def _takes_whole(engine: Engine) -> bool:
    try:
        with begin_write(engine) as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False


def test_keyed_writers_with_other_keys_run_side_by_side_and_the_same_key_waits(
    engines: tuple[Engine, Engine],
) -> None:
    first, second = engines
    with begin_keyed_write(first, {7, 8}):
        assert _takes_keyed(second, {9})
        assert _takes_keyed(second, set())  # no key: shares the writers' lock only
        assert not _takes_keyed(second, {8, 9})
        assert not _takes_whole(second)  # the whole lock waits for every keyed writer
    assert _takes_whole(second)


def test_a_whole_writer_keeps_keyed_writers_out(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    with begin_write(first):
        assert not _takes_keyed(second, {1})
    assert _takes_keyed(second, {1})


def test_a_store_batch_locks_only_its_own_range_of_pmids(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    held = int("35350566") // PMID_RANGE
    other = pubmed_record(str((held + 5) * PMID_RANGE + 1), doi=None, pmcid=None)
    same = pubmed_record(str(held * PMID_RANGE + 1), doi=None, pmcid=None)
    with begin_keyed_write(first, {held}):
        result = store_articles(second, [other], url=None, fetched_at=AT)
        assert result.created == (other.pmid,)
        with pytest.raises(StorageError):
            store_articles(second, [same], url=None, fetched_at=AT)
    assert store_articles(second, [same], url=None, fetched_at=AT).created == (same.pmid,)


def test_a_batch_that_adopts_an_article_without_a_pmid_is_stored_as_the_only_writer(
    engines: tuple[Engine, Engine],
) -> None:
    """Planned under its key locks, the batch finds an article stored from Crossref alone that holds its
    DOI: that article is outside its ranges, so it is planned again under the whole lock, and adopts it."""
    first, second = engines
    with first.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO articles (doi, title, in_pubmed, deleted, retracted, created_at, updated_at)"
                " VALUES ('10.9999/orphan', 'From Crossref alone', false, false, false, :at, :at)"
            ),
            {"at": AT},
        )
    record = pubmed_record("41000001", doi="10.9999/orphan", pmcid=None)
    with begin_keyed_write(first, {0}):  # another range is busy: the batch still gets stored
        with pytest.raises(StorageError):  # but not while a keyed writer holds the writers' lock shared
            store_articles(second, [record], url=None, fetched_at=AT)
    result = store_articles(second, [record], url=None, fetched_at=AT)
    assert result.updated == (record.pmid,) and result.created == ()
    with first.connect() as conn:
        rows = conn.execute(sa.text("SELECT pmid, doi, in_pubmed FROM articles")).all()
    assert [tuple(r) for r in rows] == [(record.pmid, "10.9999/orphan", True)]


def test_two_writers_adding_one_journal_at_once_keep_what_each_knows(engines: tuple[Engine, Engine]) -> None:
    """Writer A adds a journal without its electronic ISSN and has not committed; writer B, beside it,
    finds it missing too, so its insert waits for A's row, then finds it there: B fills in the ISSN it
    knows rather than dropping it (a 3-worker ingest lost it once)."""
    first, second = engines
    science = Journal(title="Science", nlm_unique_id="0404511", issn_print="0036-8075")
    with_online = Journal(title="Science", nlm_unique_id="0404511", issn_electronic="1095-9203")
    outcome: list[BaseException | dict[str, int]] = []

    def writer_b() -> None:
        try:
            with begin_keyed_write(second, {2}) as conn:
                outcome.append(resolve_journals(conn, [with_online]))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    with begin_keyed_write(first, {1}) as conn:
        resolve_journals(conn, [science])
        thread = threading.Thread(target=writer_b)
        thread.start()
        _wait_until_a_backend_waits_for_a_lock(first, thread)
    thread.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], dict), outcome
    with first.connect() as conn:
        rows = conn.execute(sa.text("SELECT issn_print, issn_electronic FROM journals")).all()
    assert [tuple(r) for r in rows] == [("0036-8075", "1095-9203")]


def _wait_until_a_backend_waits_for_a_lock(engine: Engine, thread: threading.Thread) -> None:
    """Until the second engine's session waits for a lock (B's insert behind A's row), or B is done."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = :name"
    )
    with engine.connect() as conn:
        for _ in range(600):  # a guard against a hang, not a measure of anything
            if not thread.is_alive() or conn.execute(query, {"name": SECOND}).scalar_one():
                return
            time.sleep(0.05)
