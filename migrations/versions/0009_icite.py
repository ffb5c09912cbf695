"""Citation impact: iCite metrics per article over time, citation edges, and their reporting views.

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-01

Written out in full, as 0001: the SQL here stays what it was when later models change. The views follow
0003's rules (columns named, deleted articles left out, the same SQL on both dialects but for the
median and the h-index, which SQLite has no function for and get there with window functions).
Downgrade drops the views, then the tables, then the column it added.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0005"
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


def _views() -> dict[str, str]:
    """Each view's SELECT, in creation order (filled in below)."""
    return VIEWS


VIEWS: dict[str, str] = {}


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
