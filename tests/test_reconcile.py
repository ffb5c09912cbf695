"""db.reconcile and the PubMed store's history, conflicts and provenance, on both dialects.

Records are the seed's fixtures with ids or fields changed (tests.db_helpers), so that every stored
payload parses back to what the test meant: merges re-parse them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.article_state import read_provenance
from db.conflicts import ConflictInfo, list_conflicts
from db.engine import downgrade, open_database, upgrade
from db.history import list_history
from db.models import metadata
from db.reconcile import (
    EnrichResult,
    reconcile_articles,
    store_crossref,
    store_pmc,
)
from db.runs import finish_run, start_run
from db.store import StoreResult, store_articles
from enrich.merge import policy_from_config
from enrich.records import CrossrefWork, PmcFront
from harvester.core.errors import StorageError
from harvester.core.records import Article
from harvester.sources.pubmed_xml import parse_pubmed
from tests.db_helpers import (
    SEED_DOI,
    SEED_PMCID,
    SEED_PMID,
    SEED_TITLE,
    crossref_work,
    database_params,
    failing_statement,
    fresh_database_url,
    make_article,
    open_migrated,
    pmc_front,
    pubmed_record,
    recorded_statements,
    snapshot,
)

T_PUBMED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T_PMC = T_PUBMED + timedelta(hours=1)
T_CROSSREF = T_PUBMED + timedelta(hours=2)
LATER = T_PUBMED + timedelta(days=30)
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COPY")  # COPY: PostgreSQL's bulk rows
FUNDER = {
    "name": "National Natural Science Foundation of China",
    "DOI": "10.13039/501100001809",
    "award": ["81972834"],
}
CC_BY = "https://creativecommons.org/licenses/by/4.0/"


@pytest.fixture(params=database_params())
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(dialect: str, tmp_path: Path) -> Iterator[Engine]:
    with fresh_database_url(dialect, tmp_path) as url:
        engine = open_migrated(url)
        yield engine
        engine.dispose()


def pubmed(
    engine: Engine, *articles: Article, at: datetime = T_PUBMED, run_id: int | None = None
) -> StoreResult:
    return store_articles(engine, articles, url=None, fetched_at=at, run_id=run_id)


def pmc(
    engine: Engine, *fronts: PmcFront, at: datetime = T_PMC, run_id: int | None = None, **kwargs: Any
) -> EnrichResult:
    return store_pmc(
        engine, fronts, url="https://eutils.example/efetch?db=pmc", fetched_at=at, run_id=run_id, **kwargs
    )


def crossref(
    engine: Engine, *works: CrossrefWork, at: datetime = T_CROSSREF, run_id: int | None = None, **kwargs: Any
) -> EnrichResult:
    return store_crossref(
        engine, works, url="https://api.crossref.example/works", fetched_at=at, run_id=run_id, **kwargs
    )


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def article_id(engine: Engine, pmid: str | None = SEED_PMID, doi: str | None = None) -> int:
    if pmid is not None:
        return int(scalar(engine, "SELECT id FROM articles WHERE pmid = :v", v=pmid))
    return int(scalar(engine, "SELECT id FROM articles WHERE doi = :v", v=doi))


def provenance(engine: Engine, article: int) -> dict[str, tuple[str, str]]:
    found = rows(
        engine, "SELECT field, source, source_id FROM field_provenance WHERE article_id = :a", a=article
    )
    return {name: (source, source_id) for name, source, source_id in found}


def history(engine: Engine, article: int, name: str | None = None) -> list[dict[str, Any]]:
    """The article's recorded changes (its creation row left out unless asked for by name), with old
    and new values as the JSON text they are stored as."""
    return [
        {**h, **{k: None if h[k] is None else json.dumps(h[k]) for k in ("old_value", "new_value")}}
        for h in list_history(engine, article)
        if h["field"] == name or (name is None and h["field"] != "created")
    ]


def no_writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith(WRITES)]


def seed_enriched(engine: Engine, run_id: int | None = None) -> int:
    """The seed stored from PubMed, then PMC, then Crossref (with a funder); returns its article id."""
    assert pubmed(engine, pubmed_record(), run_id=run_id).created == (SEED_PMID,)
    assert pmc(engine, pmc_front(), run_id=run_id).updated
    assert crossref(engine, crossref_work(funder=[FUNDER]), run_id=run_id).updated
    return article_id(engine)


# The tables of one article, each with the columns that identify a row regardless of ids and times.
ARTICLE_TABLES = sorted(
    name
    for name, table in metadata.tables.items()
    if "article_id" in table.c and name not in {"article_history", "source_records"}
)


def article_state(engine: Engine, article: int) -> dict[str, Any]:
    """Everything stored about an article but ids, timestamps and history: what order must not change."""
    skip = {"id", "article_id", "journal_id", "created_at", "updated_at", "detected_at"}
    with engine.connect() as conn:
        query = "SELECT a.*, j.journal_key FROM articles a LEFT JOIN journals j ON j.id = a.journal_id"
        row = conn.execute(sa.text(query + " WHERE a.id = :a"), {"a": article}).mappings().one()
        state: dict[str, Any] = {"article": {k: v for k, v in row.items() if k not in skip}}
        for name in ARTICLE_TABLES:
            table = metadata.tables[name]
            found = conn.execute(sa.select(table).where(table.c.article_id == article)).mappings()
            state[name] = sorted(
                (tuple((k, v) for k, v in r.items() if k not in skip) for r in found), key=repr
            )
        state["source_records"] = sorted(
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT s.source, s.source_id, s.fetched_at, p.sha256 FROM source_records s "
                    "JOIN raw_payloads p ON p.id = s.payload_id WHERE s.article_id = :a"
                ),
                {"a": article},
            )
        )
    return state


# ---------------------------------------------------------------------------------------------- the seed


def test_the_seed_from_three_sources_is_one_article_with_each_field_from_its_source(engine: Engine) -> None:
    run = start_run(engine, "test")
    article = seed_enriched(engine, run)
    assert scalar(engine, "SELECT count(*) FROM articles") == 1
    (title, publisher, license_url, license_type, copyright_, year, citations, references, kind) = rows(
        engine,
        "SELECT title, publisher, license_url, license_type, copyright, copyright_year, citation_count, "
        "references_count, crossref_type FROM articles",
    )[0]
    assert title == SEED_TITLE
    assert (publisher, license_url, license_type) == ("Frontiers Media S.A.", CC_BY, "open-access")
    assert (copyright_, year) == ("Copyright © 2022 Liu, Gao, Kang, Liu, Wang and Wang", 2022)
    assert (citations, references, kind) == (42, 128, "journal-article")
    assert rows(engine, "SELECT subject FROM article_subjects ORDER BY position") == [("Oncology",)]
    assert rows(engine, "SELECT name, funder_doi FROM article_funders") == [
        ("National Natural Science Foundation of China", "10.13039/501100001809")
    ]
    assert rows(engine, "SELECT award_id FROM funder_awards") == [("81972834",)]
    assert rows(engine, "SELECT pmc_status, crossref_status, in_pubmed FROM articles") == [
        ("found", "found", True)
    ]
    pmc_fields = {"publisher", "license", "licenses", "copyright", "copyright_year", "subjects"}
    crossref_fields = {"citation_count", "references_count", "crossref_type", "funders"}
    assert provenance(engine, article) == {
        **{name: ("pmc", SEED_PMCID) for name in pmc_fields},
        **{name: ("crossref", SEED_DOI) for name in crossref_fields},
    }
    with engine.connect() as conn:
        full = read_provenance(conn, [article])[article]
    assert full["title"] == {"source": "pubmed", "source_id": SEED_PMID, "fetched_at": T_PUBMED.isoformat()}
    assert full["license"] == {"source": "pmc", "source_id": SEED_PMCID, "fetched_at": T_PMC.isoformat()}
    assert full["citation_count"]["fetched_at"] == T_CROSSREF.isoformat()
    assert scalar(engine, "SELECT count(*) FROM field_disagreements") == 0  # the three agree
    assert scalar(engine, "SELECT count(*) FROM conflicts") == 0
    changed = {h["field"]: h for h in history(engine, article)}
    assert set(changed) == pmc_fields | crossref_fields | {"pmc_status", "crossref_status"}
    assert json.loads(changed["publisher"]["new_value"]) == "Frontiers Media S.A."
    assert changed["publisher"]["old_value"] is None
    assert changed["citation_count"]["source"] == "crossref" and changed["citation_count"]["run_id"] == run
    payloads = rows(engine, "SELECT source, source_id FROM raw_payloads ORDER BY source")
    assert payloads == [("crossref", SEED_DOI), ("pmc", SEED_PMCID), ("pubmed", SEED_PMID)]


def test_storing_each_source_again_writes_nothing(engine: Engine) -> None:
    article = seed_enriched(engine)
    before = snapshot(engine)
    with recorded_statements(engine) as statements:
        assert pubmed(engine, pubmed_record(), at=LATER).unchanged == (SEED_PMID,)
        assert pmc(engine, pmc_front(), at=LATER) == EnrichResult((), (), (article,), (), (), ())
        assert crossref(engine, crossref_work(funder=[FUNDER]), at=LATER).unchanged == (article,)
        assert reconcile_articles(engine, [article], run_id=None).unchanged == (article,)
    assert no_writes(statements) == []
    assert snapshot(engine) == before


ORDERS = [
    ("pubmed", "pmc", "crossref"),
    ("pubmed", "crossref", "pmc"),
    ("crossref", "pmc", "pubmed"),
    ("crossref", "pubmed", "pmc"),
]


def arrive(engine: Engine, source: str) -> None:
    """One source's record arrives, as the pipeline handles it."""
    if source == "pubmed":
        result = pubmed(engine, pubmed_record())
        if result.enriched_changed:
            reconcile_articles(engine, result.enriched_changed, run_id=None)
    elif source == "pmc":
        pmc(engine, pmc_front())
    else:
        crossref(engine, crossref_work(funder=[FUNDER]), create_missing=[SEED_DOI])


def test_any_order_of_arrival_gives_the_same_article(dialect: str, tmp_path: Path) -> None:
    states = []
    for n, order in enumerate(ORDERS):
        with fresh_database_url(dialect, tmp_path / str(n)) as url:
            engine = open_migrated(url)
            try:
                for source in order:
                    arrive(engine, source)
                assert scalar(engine, "SELECT count(*) FROM articles") == 1, order
                states.append(article_state(engine, article_id(engine)))
                before = snapshot(engine)
                for source in order:  # and every source once more changes nothing
                    arrive(engine, source)
                assert snapshot(engine) == before, order
            finally:
                engine.dispose()
    for order, state in zip(ORDERS[1:], states[1:], strict=True):
        for key in state:
            assert state[key] == states[0][key], (order, key)
    assert states[0]["article"]["journal_key"] == "nlm:101568867"
    assert states[0]["article"]["in_pubmed"] is True or states[0]["article"]["in_pubmed"] == 1


def test_a_pmc_record_before_its_article_is_unmatched_and_writes_nothing(engine: Engine) -> None:
    before = snapshot(engine)
    assert pmc(engine, pmc_front()) == EnrichResult((), (), (), (), (), (SEED_PMCID,))
    assert crossref(engine, crossref_work()).unmatched == (SEED_DOI,)  # not asked to create it
    assert snapshot(engine) == before


# ---------------------------------------------------------------------------------------------- fields


def test_a_differing_crossref_title_is_a_disagreement_and_pubmed_s_title_stays(engine: Engine) -> None:
    article = seed_enriched(engine)
    assert crossref(
        engine, crossref_work(funder=[FUNDER], title=["Tumour stem cell exosomes"]), at=LATER
    ).updated
    assert scalar(engine, "SELECT title FROM articles") == SEED_TITLE
    assert rows(
        engine,
        "SELECT field, source, value, other_source, other_value FROM field_disagreements "
        "ORDER BY other_source",
    ) == [
        ("title", "crossref", "Tumour stem cell exosomes", "pmc", SEED_TITLE),
        ("title", "crossref", "Tumour stem cell exosomes", "pubmed", SEED_TITLE),
    ]
    assert rows(
        engine,
        "SELECT count(*) FROM field_disagreements d JOIN articles a ON a.id = d.article_id "
        "WHERE d.field = 'title' AND a.pmid = :p",
        p=SEED_PMID,
    ) == [(2,)]
    assert history(engine, article, "title") == []
    assert crossref(engine, crossref_work(funder=[FUNDER]), at=LATER + timedelta(1)).updated  # corrected
    assert scalar(engine, "SELECT count(*) FROM field_disagreements") == 0


def test_a_changed_pmc_licence_is_recorded_with_old_and_new(engine: Engine) -> None:
    article = seed_enriched(engine)
    nc = "https://creativecommons.org/licenses/by-nc/4.0/"
    run = start_run(engine, "later")
    assert pmc(engine, pmc_front(license_url=nc), at=LATER, run_id=run).updated == (article,)
    assert rows(engine, "SELECT license_url, license_type FROM articles") == [(nc, "open-access")]
    [change] = history(engine, article, "license")[-1:]
    assert json.loads(change["old_value"]) == {"url": CC_BY, "type": "open-access"}
    assert json.loads(change["new_value"]) == {"url": nc, "type": "open-access"}
    assert (change["source"], change["run_id"]) == ("pmc", run)
    assert rows(engine, "SELECT url FROM article_licenses") == [(nc,)]
    with engine.connect() as conn:
        assert read_provenance(conn, [article])[article]["license"]["fetched_at"] == LATER.isoformat()
    assert scalar(engine, "SELECT count(*) FROM raw_payloads WHERE source = 'pmc'") == 2  # the old one stays


def test_a_source_that_omits_a_field_keeps_the_stored_value(engine: Engine) -> None:
    article = seed_enriched(engine)
    omitting = pmc_front(license_url=None, copyright=None, subjects=("Oncology", "Exosomes"))
    assert pmc(engine, omitting, at=LATER).updated == (article,)
    with engine.connect() as conn:
        kept = read_provenance(conn, [article])[article]
    # no source states the copyright any more: it stays, with the record that said it
    assert scalar(engine, "SELECT copyright FROM articles").startswith("Copyright ©")
    assert kept["copyright"] == {"source": "pmc", "source_id": SEED_PMCID, "fetched_at": T_PMC.isoformat()}
    assert history(engine, article, "copyright") == history(engine, article, "copyright")[:1]
    # Crossref states a licence: the next source of the policy takes over
    assert rows(engine, "SELECT license_url, license_type FROM articles") == [(CC_BY, "vor")]
    assert kept["license"]["source"] == "crossref"
    assert kept["subjects"]["fetched_at"] == LATER.isoformat()
    assert rows(engine, "SELECT subject FROM article_subjects ORDER BY position") == [
        ("Oncology",),
        ("Exosomes",),
    ]


def test_funders_updates_and_trials_are_stored_as_rows(engine: Engine) -> None:
    pubmed(engine, pubmed_record())
    work = crossref_work(
        funder=[FUNDER, {"name": "Acme Foundation", "award": ["A-1", "A-2"]}],
        update_to=[
            {"type": "correction", "DOI": "10.3389/fonc.2021.1", "source": "publisher", "label": "Correction"}
        ],
        clinical_trial_number=[
            {"clinical-trial-number": "NCT01234567", "registry": "10.18810/clinical-trials-gov"}
        ],
    )
    assert crossref(engine, work).updated
    assert rows(engine, "SELECT position, name FROM article_funders ORDER BY position") == [
        (1, "National Natural Science Foundation of China"),
        (2, "Acme Foundation"),
    ]
    assert rows(engine, "SELECT funder_position, position, award_id FROM funder_awards ORDER BY 1, 2") == [
        (1, 1, "81972834"),
        (2, 1, "A-1"),
        (2, 2, "A-2"),
    ]
    assert rows(engine, "SELECT kind, direction, doi, asserted_by, label FROM article_updates") == [
        ("correction", "update-to", "10.3389/fonc.2021.1", "publisher", "Correction")
    ]
    assert rows(engine, "SELECT number FROM article_clinical_trials") == [("NCT01234567",)]
    assert scalar(engine, "SELECT retracted FROM articles") in (False, 0)  # a correction is no retraction


def test_a_policy_override_decides_and_reruns_stay_quiet(engine: Engine) -> None:
    policy = policy_from_config({"publisher": ["crossref", "pmc"], "title": ["crossref", "pubmed"]})
    pubmed(engine, pubmed_record())
    pmc(engine, pmc_front(), policy=policy)
    work = crossref_work(title=["Tumor Stem Cell Exosomes"])
    assert crossref(engine, work, policy=policy).updated
    assert rows(engine, "SELECT title, publisher FROM articles") == [
        ("Tumor Stem Cell Exosomes", "Frontiers Media SA")
    ]
    before = snapshot(engine)
    assert reconcile_articles(engine, [article_id(engine)], run_id=None, policy=policy).updated == ()
    assert snapshot(engine) == before


# ---------------------------------------------------------------------------------------------- conflicts


def two_articles(engine: Engine) -> tuple[int, int]:
    pubmed(
        engine,
        pubmed_record("1", doi="10.5555/one", pmcid="PMC1"),
        pubmed_record("2", doi="10.5555/two", pmcid="PMC2"),
    )
    return article_id(engine, "1"), article_id(engine, "2")


def read_provenance_of(engine: Engine, article: int) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return read_provenance(conn, [article])[article]


def orphan(engine: Engine, doi: str = "10.5555/orphan") -> int:
    """An article stored from Crossref alone (no PMID, not in PubMed)."""
    [created] = crossref(engine, crossref_work(doi), create_missing=[doi]).created
    return created


def test_a_record_naming_an_article_not_in_pubmed_and_another_is_a_conflict_and_merges_into_neither(
    engine: Engine,
) -> None:
    """Issue 13: exit 6 is for real ambiguity: the record would merge two stored articles into one."""
    a, _ = two_articles(engine)
    c = orphan(engine)
    before = snapshot(engine)
    run = start_run(engine, "test")
    front = pmc_front("PMC1", pmid=None, doi="10.5555/orphan")
    result = pmc(engine, front, run_id=run)
    assert result.conflicts == (
        ConflictInfo("pmc", "PMC1", (a, c), (("doi", "10.5555/orphan", c), ("pmcid", "PMC1", a))),
    )
    assert result.updated == result.unchanged == result.created == ()
    after = snapshot(engine)
    # the payload is kept (for the person who settles it), but merged into no article
    assert {name for name in after if after[name] != before[name]} == {
        "conflicts",
        "harvest_runs",
        "raw_payloads",
    }
    [conflict] = list_conflicts(engine)
    assert conflict["source"] == "pmc" and conflict["source_id"] == "PMC1"
    assert conflict["article_ids"] == [a, c] and conflict["status"] == "open" and conflict["run_id"] == run
    assert [(x["id_type"], x["value"], x["article_id"], x["pmid"]) for x in conflict["claims"]] == [
        ("doi", "10.5555/orphan", c, None),
        ("pmcid", "PMC1", a, "1"),
    ]
    assert conflict["description"].startswith("pmc PMC1 names DOI 10.5555/orphan of article ")
    again = snapshot(engine)
    assert pmc(engine, front, at=LATER).conflicts == result.conflicts
    assert snapshot(engine) == again  # reported again, recorded once
    # the record corrected: it matches one article, is merged, and the conflict is resolved
    assert pmc(engine, pmc_front("PMC1", pmid="1", doi=None), at=LATER).updated == (a,)
    assert list_conflicts(engine) == []
    [settled] = list_conflicts(engine, status="all")
    assert (settled["id"], settled["status"], settled["resolution"]) == (
        conflict["id"],
        "resolved",
        "matched",
    )


def test_a_pmc_record_naming_a_pmid_enriches_that_article_whoever_else_holds_its_pmcid(
    engine: Engine,
) -> None:
    """Two PubMed articles never conflict: the PMID the record names picks its article (was a conflict)."""
    a, b = two_articles(engine)
    result = pmc(engine, pmc_front("PMC1", pmid="2", doi=None))
    assert result.conflicts == () and result.updated == (b,)
    assert rows(engine, "SELECT article_id FROM source_records WHERE source = 'pmc'") == [(b,)]
    assert list_conflicts(engine, status="all") == []
    assert a != b


def test_a_crossref_work_naming_a_pmid_enriches_that_article_not_the_doi_holder(engine: Engine) -> None:
    """Was a conflict before issue 13: the DOI's holder and the named PMID are two PubMed articles."""
    _, b = two_articles(engine)
    result = crossref(engine, crossref_work("10.5555/one", PMID="2"))
    assert result.conflicts == () and result.updated == (b,)
    assert rows(engine, "SELECT article_id FROM source_records WHERE source = 'crossref'") == [(b,)]


def test_the_pubmed_store_shares_a_doi_another_pubmed_article_holds(engine: Engine) -> None:
    """Was "records a DOI clash once": now both articles hold the DOI, no conflict (issue 13)."""
    two_articles(engine)
    run = start_run(engine, "test")
    sharing = pubmed_record("2", doi="10.5555/one", pmcid="PMC2", title="Changed")
    assert pubmed(engine, sharing, run_id=run).conflicts == ()
    assert list_conflicts(engine, status="all") == []
    assert rows(engine, "SELECT pmid, doi FROM articles ORDER BY pmid") == [
        ("1", "10.5555/one"),
        ("2", "10.5555/one"),
    ]
    assert rows(engine, "SELECT value, pmid FROM report_shared_identifiers ORDER BY pmid") == [
        ("10.5555/one", "1"),
        ("10.5555/one", "2"),
    ]


def test_a_crossref_work_whose_doi_two_pubmed_articles_share_enriches_both(engine: Engine) -> None:
    pubmed(
        engine,
        pubmed_record("1", doi="10.5555/shared", pmcid="PMC1"),
        pubmed_record("2", doi="10.5555/shared", pmcid="PMC2"),
    )
    a, b = article_id(engine, "1"), article_id(engine, "2")
    result = crossref(engine, crossref_work("10.5555/shared"))
    assert result.conflicts == () and set(result.updated) == {a, b}
    got = rows(
        engine,
        "SELECT article_id, source_id FROM source_records WHERE source = 'crossref' ORDER BY article_id",
    )
    assert got == [(a, "10.5555/shared"), (b, "10.5555/shared")]
    provenance = read_provenance_of(engine, a), read_provenance_of(engine, b)
    for found in provenance:
        assert found["citation_count"]["source"] == "crossref"
        assert found["citation_count"]["source_id"] == "10.5555/shared"
    # the same work again writes nothing
    before = snapshot(engine)
    assert crossref(engine, crossref_work("10.5555/shared"), at=LATER).updated == ()
    assert snapshot(engine) == before


def test_the_pubmed_store_records_a_record_naming_two_articles_not_in_pubmed_as_a_conflict(
    engine: Engine,
) -> None:
    c = orphan(engine, "10.5555/c")
    d = orphan(engine, "10.5555/d")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE articles SET pmcid = 'PMC9' WHERE id = :id"), {"id": d})
    run = start_run(engine, "test")
    record = pubmed_record("7", doi="10.5555/c", pmcid="PMC9")
    assert pubmed(engine, record, run_id=run).conflicts == ("7",)
    own = article_id(engine, "7")
    assert own not in (c, d)  # stored on its own: nothing lost, nothing merged
    [conflict] = list_conflicts(engine)
    assert (conflict["source"], conflict["source_id"], conflict["article_ids"]) == (
        "pubmed",
        "7",
        sorted([own, c, d]),
    )
    before = snapshot(engine)
    assert pubmed(engine, record, at=LATER) == StoreResult((), (), ("7",), conflicts=("7",))
    assert snapshot(engine) == before
    changed = pubmed_record("7", doi="10.5555/c", pmcid="PMC9", title="Changed")
    assert pubmed(engine, changed, at=LATER).conflicts == ("7",)  # still open: still reported


# ---------------------------------------------------------------------------------------------- statuses


def test_a_doi_unknown_to_crossref_is_a_status_and_a_later_answer_clears_it(engine: Engine) -> None:
    pubmed(engine, pubmed_record())
    article = article_id(engine)
    result = crossref(engine, not_found=["https://doi.org/10.3389/FONC.2022.836548"])
    assert result == EnrichResult((), (), (), (SEED_DOI,), (), ())
    assert scalar(engine, "SELECT crossref_status FROM articles") == "not_found"
    assert [json.loads(h["new_value"]) for h in history(engine, article, "crossref_status")] == ["not_found"]
    before = snapshot(engine)
    crossref(engine, not_found=[SEED_DOI], at=LATER)
    assert snapshot(engine) == before  # already known: nothing written
    assert crossref(engine, crossref_work(), at=LATER).updated == (article,)
    assert scalar(engine, "SELECT crossref_status FROM articles") == "found"
    crossref(engine, not_found=[SEED_DOI], at=LATER + timedelta(1))
    # found again with the very same payload: only the status moves
    payloads = scalar(engine, "SELECT count(*) FROM raw_payloads")
    assert crossref(engine, crossref_work(), at=LATER + timedelta(2)).updated == (article,)
    assert scalar(engine, "SELECT crossref_status FROM articles") == "found"
    assert scalar(engine, "SELECT count(*) FROM raw_payloads") == payloads
    statuses = [json.loads(h["new_value"]) for h in history(engine, article, "crossref_status")]
    assert statuses == ["not_found", "found", "not_found", "found"]


def test_a_pmcid_efetch_did_not_return_is_a_status(engine: Engine) -> None:
    pubmed(engine, pubmed_record())
    assert pmc(engine, not_found=["pmc8958025"]).not_found == (SEED_PMCID,)
    assert scalar(engine, "SELECT pmc_status FROM articles") == "not_found"
    pmc(engine, pmc_front())
    assert scalar(engine, "SELECT pmc_status FROM articles") == "found"


# ---------------------------------------------------------------------------------------------- Crossref only


def test_a_doi_pubmed_does_not_know_is_stored_from_crossref_then_merged_when_pubmed_has_it(
    engine: Engine,
) -> None:
    doi = "10.5555/chapter.1"
    work = crossref_work(
        doi,
        type="book-chapter",
        title=["A Chapter PubMed Never Indexed"],
        author=[
            {
                "given": "Ada",
                "family": "Lovelace",
                "sequence": "first",
                "affiliation": [{"name": "Analytical"}],
            }
        ],
    )
    result = crossref(engine, work, create_missing=["DOI:10.5555/CHAPTER.1"])
    [article] = result.created
    assert result.updated == result.unchanged == ()
    assert rows(
        engine, "SELECT pmid, doi, in_pubmed, title, crossref_type, crossref_status FROM articles"
    ) == [(None, doi, False, "A Chapter PubMed Never Indexed", "book-chapter", "found")]
    assert rows(engine, "SELECT last_name, fore_name, initials FROM authors") == [("Lovelace", "Ada", "A")]
    assert rows(engine, "SELECT affiliation FROM author_affiliations") == [("Analytical",)]
    assert scalar(engine, "SELECT j.journal_key FROM articles a JOIN journals j ON j.id = a.journal_id") == (
        "issn:2234-943X"
    )
    assert provenance(engine, article)["title"] == ("crossref", doi)
    assert provenance(engine, article)["authors"] == ("crossref", doi)
    assert history(engine, article) == []  # created, not changed
    again = snapshot(engine)
    assert crossref(engine, work, create_missing=[doi], at=LATER).unchanged == (article,)
    assert snapshot(engine) == again

    # PubMed indexes it later: the same article, not a second one
    stored = pubmed(
        engine, pubmed_record("39000001", doi=doi, pmcid=None, title="A Chapter, as PubMed Has It")
    )
    assert stored.created == () and stored.updated == ("39000001",)
    assert stored.enriched_changed == (article,)
    assert scalar(engine, "SELECT count(*) FROM articles") == 1
    assert rows(engine, "SELECT pmid, in_pubmed, title FROM articles") == [
        ("39000001", True, "A Chapter PubMed Never Indexed")  # Crossref's title until merged by policy
    ]
    assert reconcile_articles(engine, stored.enriched_changed, run_id=None).updated == (article,)
    assert rows(engine, "SELECT pmid, in_pubmed, title FROM articles") == [
        ("39000001", True, "A Chapter, as PubMed Has It")
    ]
    assert rows(engine, "SELECT last_name FROM authors ORDER BY position")[:2] == [("Liu",), ("Gao",)]
    assert "title" not in provenance(engine, article) and "authors" not in provenance(engine, article)
    assert provenance(engine, article)["crossref_type"] == ("crossref", doi)
    assert scalar(engine, "SELECT j.journal_key FROM articles a JOIN journals j ON j.id = a.journal_id") == (
        "nlm:101568867"
    )
    titles = [(json.loads(h["old_value"]), h["source"]) for h in history(engine, article, "title")]
    assert titles == [("A Chapter PubMed Never Indexed", "pubmed")]
    assert {h["field"] for h in history(engine, article)} >= {"pmid", "in_pubmed", "title", "journal"}
    assert rows(engine, "SELECT source, other_source FROM field_disagreements WHERE field = 'title'") == [
        ("crossref", "pubmed")
    ]
    before = snapshot(engine)
    assert reconcile_articles(engine, [article], run_id=None).unchanged == (article,)
    assert snapshot(engine) == before


# ---------------------------------------------------------------------------------------------- retraction


def test_retraction_from_pubmed_and_from_crossref_is_recorded_with_each_source(engine: Engine) -> None:
    record = pubmed_record(retracted=True, retraction_in=("Front Oncol. 2023;13:1234", "37000001"))
    pubmed(engine, record)
    assert scalar(engine, "SELECT retracted FROM articles") in (True, 1)
    assert rows(
        engine, "SELECT source, position, statement, notice FROM retraction_sources ORDER BY 1, 2"
    ) == [
        ("pubmed", 1, "PublicationType: Retracted Publication", None),
        ("pubmed", 2, "RetractionIn: Front Oncol. 2023;13:1234", "37000001"),
    ]
    notice = {"type": "retraction", "DOI": "10.3389/fonc.2023.1234", "source": "retraction-watch"}
    assert crossref(engine, crossref_work(updated_by=[notice])).updated
    assert rows(
        engine, "SELECT source, statement, notice FROM retraction_sources ORDER BY source, position"
    ) == [
        (
            "crossref",
            "updated-by retraction 10.3389/fonc.2023.1234 (retraction-watch)",
            "10.3389/fonc.2023.1234",
        ),
        ("pubmed", "PublicationType: Retracted Publication", None),
        ("pubmed", "RetractionIn: Front Oncol. 2023;13:1234", "37000001"),
    ]
    assert rows(engine, "SELECT kind, direction FROM article_updates") == [("retraction", "updated-by")]


def test_crossref_alone_can_say_a_pubmed_article_is_retracted_and_pubmed_does_not_undo_it(
    engine: Engine,
) -> None:
    pubmed(engine, pubmed_record())
    article = article_id(engine)
    notice = {"type": "retraction", "DOI": "10.3389/fonc.2023.1", "source": "publisher"}
    crossref(engine, crossref_work(updated_by=[notice]))
    assert scalar(engine, "SELECT retracted FROM articles") in (True, 1)
    assert [json.loads(h["new_value"]) for h in history(engine, article, "retracted")] == [True]
    assert history(engine, article, "retracted")[0]["source"] == "crossref"
    result = pubmed(engine, pubmed_record(title="Changed"), at=LATER)
    assert result.enriched_changed == (article,)
    assert scalar(engine, "SELECT retracted FROM articles") in (True, 1)
    assert rows(engine, "SELECT source FROM retraction_sources") == [("crossref",)]


# ---------------------------------------------------------------------------------------------- PubMed store


def test_a_changed_pubmed_title_is_recorded_in_history(engine: Engine) -> None:
    pubmed(engine, pubmed_record())
    article = article_id(engine)
    assert history(engine, article) == []  # new articles have no changes, only their creation
    run = start_run(engine, "test")
    assert pubmed(engine, pubmed_record(title="A Corrected Title"), at=LATER, run_id=run).updated == (
        SEED_PMID,
    )
    [change] = history(engine, article)
    assert change["field"] == "title" and change["source"] == "pubmed" and change["run_id"] == run
    assert (json.loads(change["old_value"]), json.loads(change["new_value"])) == (
        SEED_TITLE,
        "A Corrected Title",
    )
    assert datetime.fromisoformat(change["changed_at"]) > T_PUBMED


def test_a_pubmed_record_without_a_value_never_erases_the_stored_one(engine: Engine) -> None:
    pubmed(engine, pubmed_record(pages="123-9", doi="10.5555/kept"))
    article = article_id(engine)
    assert pubmed(engine, pubmed_record(title=None, doi=None), at=LATER).updated == (SEED_PMID,)
    assert rows(engine, "SELECT title, pages, doi FROM articles") == [(SEED_TITLE, "123-9", "10.5555/kept")]
    assert history(engine, article) == []
    assert pubmed(engine, pubmed_record(title="New", pages="200-1"), at=LATER + timedelta(1)).updated
    assert rows(engine, "SELECT title, pages FROM articles") == [("New", "200-1")]
    assert {h["field"] for h in history(engine, article)} == {"title", "pages", "doi"}


def test_the_pubmed_store_leaves_fields_another_source_supplied_to_the_merge(engine: Engine) -> None:
    pubmed(engine, pubmed_record())  # PubMed gives no pages
    article = article_id(engine)
    pmc(engine, pmc_front(pages=("1", "12")))
    assert scalar(engine, "SELECT pages FROM articles") == "1-12"
    assert provenance(engine, article)["pages"] == ("pmc", SEED_PMCID)
    result = pubmed(engine, pubmed_record(title="Changed"), at=LATER)
    assert result.enriched_changed == (article,)
    assert scalar(engine, "SELECT pages FROM articles") == "1-12"
    reconcile_articles(engine, [article], run_id=None)
    assert scalar(engine, "SELECT pages FROM articles") == "1-12"  # PubMed still states none
    # PubMed now gives pages: the store leaves PMC's, the merge puts PubMed's first by the policy
    result = pubmed(engine, pubmed_record(title="Changed", pages="1-9"), at=LATER + timedelta(1))
    assert scalar(engine, "SELECT pages FROM articles") == "1-12"
    assert reconcile_articles(engine, result.enriched_changed, run_id=None).updated == (article,)
    assert scalar(engine, "SELECT pages FROM articles") == "1-9"
    assert "pages" not in provenance(engine, article)
    assert rows(
        engine, "SELECT field, source, other_source FROM field_disagreements WHERE field = 'pages'"
    ) == [("pages", "pmc", "pubmed")]
    assert [(h["source"], json.loads(h["new_value"])) for h in history(engine, article, "pages")] == [
        ("pmc", "1-12"),
        ("pubmed", "1-9"),
    ]


def test_a_changed_pubmed_record_is_merged_again_without_a_second_history_row(engine: Engine) -> None:
    article = seed_enriched(engine)
    result = pubmed(engine, pubmed_record(title="A Corrected Title"), at=LATER)
    assert result.enriched_changed == (article,)
    reconcile_articles(engine, result.enriched_changed, run_id=None)
    assert [h["source"] for h in history(engine, article, "title")] == ["pubmed"]
    assert scalar(engine, "SELECT title FROM articles") == "A Corrected Title"
    disagreements = rows(
        engine, "SELECT source, other_source FROM field_disagreements WHERE field = 'title' ORDER BY 1"
    )
    assert disagreements == [("crossref", "pubmed"), ("pmc", "pubmed")]


def _pubmed_fixture_files() -> list[Path]:
    files = sorted((Path(__file__).parent / "fixtures").glob("efetch_pubmed_*.xml"))
    shared = os.environ.get("HARVEST_FIXTURES")
    if shared:
        files += sorted((Path(shared) / "eutils-pubmed-xml").glob("*.xml"))
        files += sorted((Path(shared) / "medline-updatefiles").rglob("*.xml*"))
    return files


def test_merging_articles_stored_from_pubmed_alone_changes_nothing(engine: Engine) -> None:
    """The PubMed store and the merge agree on every field of every PubMed fixture (the shared ones too)."""
    records = [
        record
        for path in _pubmed_fixture_files()
        for record in parse_pubmed(path.read_bytes(), keep_raw=True)
        if isinstance(record, Article)
    ]
    store_articles(engine, records, url=None, fetched_at=T_PUBMED)
    ids = list(range(1, 1 + int(scalar(engine, "SELECT max(id) FROM articles"))))
    before = snapshot(engine)
    result = reconcile_articles(engine, ids, run_id=None)
    assert result.updated == ()
    assert len(result.unchanged) == len({r.pmid for r in records})
    assert snapshot(engine) == before
    # what it reports are the DOI clashes the PubMed store recorded
    recorded = {(c["source_id"], tuple(c["article_ids"])) for c in list_conflicts(engine)}
    for info in result.conflicts:
        assert info.source == "pubmed" and (info.source_id, info.article_ids) in recorded


def test_a_stored_payload_that_does_not_parse_keeps_its_place_in_the_policy(engine: Engine) -> None:
    # make_article's raw_xml is a stand-in fragment that parses to no record at all
    record = make_article(SEED_PMID, doi=SEED_DOI, pmcid=SEED_PMCID, title="PubMed's own title")
    pubmed(engine, record)
    assert pmc(engine, pmc_front()).updated
    assert scalar(engine, "SELECT title FROM articles") == "PubMed's own title"
    assert "title" not in provenance(engine, article_id(engine))
    assert rows(engine, "SELECT source, other_source FROM field_disagreements WHERE field = 'title'") == [
        ("pmc", "pubmed")
    ]


def test_only_articles_with_other_sources_are_named_for_merging(engine: Engine) -> None:
    pubmed(engine, pubmed_record(), pubmed_record("2", doi="10.5555/two", pmcid="PMC2"))
    pmc(engine, pmc_front())
    result = pubmed(
        engine,
        pubmed_record(title="x"),
        pubmed_record("2", doi="10.5555/two", pmcid="PMC2", title="y"),
        at=LATER,
    )
    assert result.updated == (SEED_PMID, "2") and result.enriched_changed == (article_id(engine),)


# ---------------------------------------------------------------------------------------------- mechanics


def test_statements_per_batch_do_not_grow_with_the_batch(engine: Engine) -> None:
    def count(n: int, first: int) -> int:
        pmids = [str(first + i) for i in range(n)]
        pubmed(engine, *(pubmed_record(p, doi=f"10.5555/{p}", pmcid=f"PMC{p}") for p in pmids))
        with recorded_statements(engine) as statements:
            result = pmc(engine, *(pmc_front(f"PMC{p}", pmid=p, doi=f"10.5555/{p}") for p in pmids))
        assert len(result.updated) == n
        return len(statements)

    assert count(3, 1000) == count(30, 2000)


def test_a_failure_mid_batch_leaves_the_database_as_it_was(engine: Engine) -> None:
    pubmed(engine, pubmed_record())
    before = snapshot(engine)
    with failing_statement(engine, "INSERT INTO field_provenance"), pytest.raises(StorageError) as caught:
        pmc(engine, pmc_front())
    assert str(caught.value).startswith("cannot store pmc records in ")
    assert snapshot(engine) == before
    assert pmc(engine, pmc_front()).updated


def test_records_without_raw_bytes_or_a_naive_time_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="raw_xml"):
        pmc(engine, PmcFront(pmcid="PMC1"))
    with pytest.raises(ValueError, match="raw_json"):
        crossref(engine, CrossrefWork(doi="10.5555/x"))
    with pytest.raises(ValueError, match="timezone-aware"):
        pmc(engine, pmc_front(), at=datetime(2024, 1, 1))


def test_runs_are_recorded_and_their_history_survives_them(engine: Engine) -> None:
    run = start_run(engine, "harvest pmid (1 ids)")
    assert rows(engine, "SELECT command, status, finished_at FROM harvest_runs") == [
        ("harvest pmid (1 ids)", "running", None)
    ]
    article = seed_enriched(engine, run)
    finish_run(engine, run, "ok", {"created": 1})
    ((status, summary, finished),) = rows(engine, "SELECT status, summary, finished_at FROM harvest_runs")
    assert status == "ok" and json.loads(summary) == {"created": 1} and finished is not None
    with pytest.raises(ValueError, match="unknown run status"):
        finish_run(engine, run, "done", {})
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM harvest_runs"))
    assert {h["run_id"] for h in history(engine, article)} == {None}


def test_deleting_an_article_deletes_what_enrichment_stored_with_it(engine: Engine) -> None:
    notice = {"type": "retraction", "DOI": "10.3389/fonc.2023.1", "source": "publisher"}
    seed_enriched(engine)
    crossref(engine, crossref_work(funder=[FUNDER], updated_by=[notice], title=["Other"]), at=LATER)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM source_records"))
        conn.execute(sa.text("DELETE FROM articles"))
    for name in ARTICLE_TABLES:
        assert scalar(engine, f"SELECT count(*) FROM {name}") == 0, name  # noqa: S608


def test_migration_0002_downgrades_to_exactly_0001(dialect: str, tmp_path: Path) -> None:
    def schema(engine: Engine) -> dict[str, Any]:
        inspector = sa.inspect(engine)
        return {
            name: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
                inspector.get_pk_constraint(name),
                inspector.get_foreign_keys(name),
                sorted(inspector.get_indexes(name), key=repr),
                sorted(inspector.get_unique_constraints(name), key=repr),
            )
            for name in sorted(inspector.get_table_names())
        }

    with fresh_database_url(dialect, tmp_path) as url:
        engine = open_database(url, migrate=False)
        try:
            upgrade(engine, "0001")
            first = schema(engine)
            upgrade(engine, "0002")
            assert set(schema(engine)) - set(first) == {
                "harvest_runs",
                "field_provenance",
                "field_disagreements",
                "article_history",
                "conflicts",
                "article_subjects",
                "article_licenses",
                "article_funders",
                "funder_awards",
                "article_updates",
                "retraction_sources",
                "article_clinical_trials",
            }
            downgrade(engine, "0001")
            engine.dispose()
            engine = open_database(url, migrate=False)
            assert schema(engine) == first
        finally:
            engine.dispose()
