"""The citation-impact views (migration 0009) on a small hand-made database, on both dialects.

The expected values are worked out by hand from the rows below, not read back from the views.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.models import metadata
from db.reporting import open_report

NOW = datetime(2026, 12, 1, tzinfo=UTC)
T = metadata.tables
ORCID = "0000-0002-1825-0097"
# article id -> (citation_count, RCR) of its latest iCite row; None: no metrics
LATEST: dict[int, tuple[int, float | None] | None] = {
    1: (10, 2.0),
    2: (8, 1.0),
    3: (5, 0.5),
    4: (4, 3.0),
    5: (3, None),
    6: None,
    7: (100, 9.0),  # deleted: counts nowhere
}


def metrics_row(article_id: int, day: date, citations: int, rcr: float | None, row_id: int) -> dict[str, Any]:
    return {
        "id": row_id,
        "article_id": article_id,
        "source": "icite",
        "valid_on": day,
        "fetched_at": NOW,
        "citation_count": citations,
        "relative_citation_ratio": rcr,
    }


@pytest.fixture
def impact(engine: Engine) -> Engine:
    articles = [
        {
            "id": i,
            "pmid": str(100 + i),
            "title": f"Article {i}",
            "created_at": NOW,
            "updated_at": NOW,
            "deleted": i == 7,
        }
        for i in LATEST
    ]
    authors: list[dict[str, Any]] = []
    # the ORCID author wrote 1-5 and 7; "Jane Smith" (no ORCID) wrote 1, 2 and 6; "J Smith" once more on 6
    for article_id in (1, 2, 3, 4, 5, 7):
        authors.append(
            {"article_id": article_id, "position": 1, "last_name": "Doe", "fore_name": "Ann", "orcid": ORCID}
        )
    for article_id in (1, 2, 6):
        authors.append(
            {
                "article_id": article_id,
                "position": 2,
                "last_name": "Smith",
                "fore_name": "Jane",
                "orcid": None,
            }
        )
    authors.append(
        {"article_id": 6, "position": 3, "last_name": "SMITH", "fore_name": "jane", "orcid": None}
    )  # same key
    for row in authors:
        row.update(valid=True, equal_contrib=False)
    rows = [metrics_row(1, date(2026, 10, 1), 1, 1.0, 1)]  # an older row of article 1: not the latest
    rows += [
        metrics_row(i, date(2026, 11, 1), v[0], v[1], 10 + i) for i, v in LATEST.items() if v is not None
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(T["articles"]), articles)
        conn.execute(sa.insert(T["authors"]), authors)
        conn.execute(sa.insert(T["article_metrics"]), rows)
        conn.execute(
            sa.insert(T["citation_edges"]),
            [
                {"citing_pmid": "102", "cited_pmid": "101", "source": "icite"},
                {"citing_pmid": "999", "cited_pmid": "103", "source": "icite"},
                {"citing_pmid": "998", "cited_pmid": "997", "source": "icite"},  # neither end stored
                {"citing_pmid": "107", "cited_pmid": "996", "source": "icite"},  # only a deleted end
            ],
        )
    return engine


def view(engine: Engine, name: str) -> list[dict[str, Any]]:
    with open_report(engine, view=name) as report:
        return [dict(zip(report.columns, row, strict=True)) for row in report.rows]


def test_author_impact_agrees_with_hand_computed_h_index_median_and_totals(impact: Engine) -> None:
    rows = {r["author_key"]: r for r in view(impact, "report_author_impact")}
    assert set(rows) == {f"orcid:{ORCID}", "name:smith|jane"}
    doe = rows[f"orcid:{ORCID}"]
    # citations 10, 8, 5, 4, 3: four articles have at least 4 citations, not five with 5 -> h = 4
    assert (doe["articles"], doe["articles_with_metrics"], doe["total_citations"], doe["h_index"]) == (
        5,
        5,
        30,
        4,
    )
    # RCRs 2.0, 1.0, 0.5, 3.0 (article 5 has none): mean 6.5 / 4, median (1.0 + 2.0) / 2
    assert doe["mean_rcr"] == pytest.approx(1.625) and doe["median_rcr"] == pytest.approx(1.5)
    smith = rows["name:smith|jane"]
    # articles 1, 2 and 6 (6 has no metrics; its two Smith rows are one author): citations 10, 8 -> h = 2
    assert (
        smith["articles"],
        smith["articles_with_metrics"],
        smith["total_citations"],
        smith["h_index"],
    ) == (
        3,
        2,
        18,
        2,
    )
    assert smith["median_rcr"] == pytest.approx(1.5) and smith["orcid"] is None


def test_latest_metrics_shows_the_trend_against_the_row_before(impact: Engine) -> None:
    rows = {r["article_id"]: r for r in view(impact, "report_latest_metrics")}
    assert set(rows) == {1, 2, 3, 4, 5}  # 6 has no metrics, 7 is deleted
    first = rows[1]
    assert (first["valid_on"], first["citation_count"], first["relative_citation_ratio"]) == (
        "2026-11-01",
        10,
        2.0,
    )
    assert (first["previous_valid_on"], first["previous_citation_count"], first["citation_count_change"]) == (
        "2026-10-01",
        1,
        9,
    )
    assert first["trend"] == "up" and first["relative_citation_ratio_change"] == pytest.approx(1.0)
    assert rows[2]["trend"] is None and rows[2]["previous_valid_on"] is None
    assert len(view(impact, "report_article_metrics")) == 6  # the six rows of live articles


def test_citations_lists_edges_with_a_live_stored_end_and_their_titles(impact: Engine) -> None:
    rows = view(impact, "report_citations")
    assert [(r["citing_pmid"], r["cited_pmid"], r["citing_title"], r["cited_title"]) for r in rows] == [
        ("102", "101", "Article 2", "Article 1"),
        ("999", "103", None, "Article 3"),
    ]
