"""Citation impact: iCite metrics per article over time, citation edges, and their reporting views.

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-01

Written out in full, as 0001: the SQL here stays what it was when later models change. The views follow
0003's rules (columns named, deleted articles left out) and are the same SQL on both dialects: the
median and the h-index, for which SQLite has no function, come from window functions (SQLite >= 3.25).
Downgrade drops the views, then the tables, then the column it added.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLOATS = (
    "relative_citation_ratio",
    "nih_percentile",
    "field_citation_rate",
    "expected_citations_per_year",
    "citations_per_year",
    "apt",
)
_SHARES = ("human", "animal", "molecular_cellular", "x_coord", "y_coord")


# The latest iCite row of each article: greatest (valid_on, id).
_LATEST = """
SELECT m.article_id AS article_id, m.source AS source, m.valid_on AS valid_on,
       m.citation_count AS citation_count, m.relative_citation_ratio AS relative_citation_ratio,
       m.nih_percentile AS nih_percentile,
       ROW_NUMBER() OVER (PARTITION BY m.article_id, m.source ORDER BY m.valid_on DESC, m.id DESC) AS recency
FROM article_metrics m
"""

_ARTICLE_METRICS = """
SELECT a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title,
       a.pub_year AS pub_year,
       j.title AS journal_title,
       m.source AS source,
       m.valid_on AS valid_on,
       m.citation_count AS citation_count,
       m.relative_citation_ratio AS relative_citation_ratio,
       m.nih_percentile AS nih_percentile,
       m.field_citation_rate AS field_citation_rate,
       m.expected_citations_per_year AS expected_citations_per_year,
       m.citations_per_year AS citations_per_year,
       m.apt AS apt,
       m.is_research_article AS is_research_article,
       m.is_clinical AS is_clinical,
       m.provisional AS provisional,
       m.fetched_at AS fetched_at
FROM article_metrics m
JOIN articles a ON a.id = m.article_id
LEFT JOIN journals j ON j.id = a.journal_id
WHERE NOT a.deleted
"""

_LATEST_METRICS = """
SELECT a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title,
       a.pub_year AS pub_year,
       j.title AS journal_title,
       cur.source AS source,
       cur.valid_on AS valid_on,
       cur.citation_count AS citation_count,
       cur.relative_citation_ratio AS relative_citation_ratio,
       cur.nih_percentile AS nih_percentile,
       prev.valid_on AS previous_valid_on,
       prev.citation_count AS previous_citation_count,
       prev.relative_citation_ratio AS previous_relative_citation_ratio,
       cur.citation_count - prev.citation_count AS citation_count_change,
       cur.relative_citation_ratio - prev.relative_citation_ratio AS relative_citation_ratio_change,
       CASE
           WHEN prev.article_id IS NULL OR cur.relative_citation_ratio IS NULL
                OR prev.relative_citation_ratio IS NULL THEN NULL
           WHEN cur.relative_citation_ratio > prev.relative_citation_ratio THEN 'up'
           WHEN cur.relative_citation_ratio < prev.relative_citation_ratio THEN 'down'
           ELSE 'same'
       END AS trend
FROM ({latest}) cur
JOIN articles a ON a.id = cur.article_id
LEFT JOIN journals j ON j.id = a.journal_id
LEFT JOIN ({latest}) prev
       ON prev.article_id = cur.article_id AND prev.source = cur.source AND prev.recency = 2
WHERE cur.recency = 1 AND NOT a.deleted
"""

_CITATIONS = """
SELECT e.citing_pmid AS citing_pmid,
       citing.id AS citing_article_id,
       citing.title AS citing_title,
       e.cited_pmid AS cited_pmid,
       cited.id AS cited_article_id,
       cited.title AS cited_title,
       e.source AS source
FROM citation_edges e
LEFT JOIN articles citing ON citing.pmid = e.citing_pmid AND NOT citing.deleted
LEFT JOIN articles cited ON cited.pmid = e.cited_pmid AND NOT cited.deleted
WHERE citing.id IS NOT NULL OR cited.id IS NOT NULL
"""

# Authors are told apart by ORCID where the record has one, else by (last name or collective name, fore
# name or initials) lower-cased: two people of one name are one author here, and one person without an
# ORCID on some records is two. The counts are iCite's latest stored ones.
_AUTHOR_KEY = (
    "COALESCE('orcid:' || au.orcid, 'name:' || LOWER(COALESCE(au.last_name, au.collective_name, '')) || '|' "
    "|| LOWER(COALESCE(au.fore_name, au.initials, '')))"
)

_AUTHOR_IMPACT = """
WITH latest AS (
    SELECT l.article_id AS article_id, l.citation_count AS citation_count,
           l.relative_citation_ratio AS relative_citation_ratio
    FROM ({latest}) l
    WHERE l.recency = 1 AND l.source = 'icite'
),
people AS (
    SELECT {key} AS author_key,
           MAX(au.orcid) AS orcid,
           MIN(au.last_name) AS last_name,
           MIN(au.fore_name) AS fore_name,
           MIN(au.collective_name) AS collective_name
    FROM authors au
    JOIN articles a ON a.id = au.article_id
    WHERE NOT a.deleted
    GROUP BY {key}
),
author_articles AS (
    SELECT DISTINCT {key} AS author_key, au.article_id AS article_id
    FROM authors au
    JOIN articles a ON a.id = au.article_id
    WHERE NOT a.deleted
),
ranked AS (
    SELECT aa.author_key AS author_key,
           l.citation_count AS citation_count,
           l.relative_citation_ratio AS relative_citation_ratio,
           ROW_NUMBER() OVER (
               PARTITION BY aa.author_key ORDER BY COALESCE(l.citation_count, 0) DESC, aa.article_id
           ) AS citation_rank,
           ROW_NUMBER() OVER (
               PARTITION BY aa.author_key, l.relative_citation_ratio IS NULL
               ORDER BY l.relative_citation_ratio, aa.article_id
           ) AS rcr_rank,
           COUNT(l.relative_citation_ratio) OVER (PARTITION BY aa.author_key) AS rcr_count
    FROM author_articles aa
    LEFT JOIN latest l ON l.article_id = aa.article_id
)
SELECT r.author_key AS author_key,
       p.orcid AS orcid,
       p.last_name AS last_name,
       p.fore_name AS fore_name,
       p.collective_name AS collective_name,
       COUNT(*) AS articles,
       COUNT(r.citation_count) AS articles_with_metrics,
       SUM(r.citation_count) AS total_citations,
       CAST(AVG(r.relative_citation_ratio) AS DOUBLE PRECISION) AS mean_rcr,
       CAST(AVG(CASE
           WHEN r.relative_citation_ratio IS NOT NULL
                AND r.rcr_rank IN ((r.rcr_count + 1) / 2, (r.rcr_count + 2) / 2)
           THEN r.relative_citation_ratio
       END) AS DOUBLE PRECISION) AS median_rcr,
       SUM(CASE WHEN COALESCE(r.citation_count, 0) >= r.citation_rank THEN 1 ELSE 0 END) AS h_index
FROM ranked r
JOIN people p ON p.author_key = r.author_key
GROUP BY r.author_key, p.orcid, p.last_name, p.fore_name, p.collective_name
"""

VIEWS: dict[str, str] = {
    "report_article_metrics": _ARTICLE_METRICS,
    "report_latest_metrics": _LATEST_METRICS.format(latest=_LATEST),
    "report_citations": _CITATIONS,
    "report_author_impact": _AUTHOR_IMPACT.format(latest=_LATEST, key=_AUTHOR_KEY),
}


def _views() -> dict[str, str]:
    """Each view's SELECT, in creation order: the same SQL on both dialects."""
    return VIEWS


def upgrade() -> None:
    op.add_column("articles", sa.Column("icite_status", sa.Text(), nullable=True))
    op.create_table(
        "article_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("valid_on", sa.Date(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("citation_count", sa.Integer(), nullable=True),
        *(sa.Column(name, sa.Float(), nullable=True) for name in _FLOATS),
        sa.Column("is_research_article", sa.Boolean(), nullable=True),
        sa.Column("is_clinical", sa.Boolean(), nullable=True),
        sa.Column("provisional", sa.Boolean(), nullable=True),
        *(sa.Column(name, sa.Float(), nullable=True) for name in _SHARES),
        sa.Column("cited_by_clinical_count", sa.Integer(), nullable=True),
        sa.Column("references_count", sa.Integer(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_metrics_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["harvest_runs.id"],
            name=op.f("fk_article_metrics_run_id_harvest_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_metrics")),
    )
    op.create_index(
        op.f("ix_article_metrics_article_id_source_valid_on"),
        "article_metrics",
        ["article_id", "source", "valid_on"],
    )
    op.create_table(
        "citation_edges",
        sa.Column("citing_pmid", sa.Text(), nullable=False),
        sa.Column("cited_pmid", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("citing_pmid", "cited_pmid", "source", name=op.f("pk_citation_edges")),
    )
    op.create_index(op.f("ix_citation_edges_cited_pmid"), "citation_edges", ["cited_pmid"])
    for name, select in _views().items():
        op.execute(f"CREATE VIEW {name} AS {select.strip()}")


def downgrade() -> None:
    for name in reversed(_views()):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("citation_edges")  # with its index
    op.drop_table("article_metrics")
    op.drop_column("articles", "icite_status")
