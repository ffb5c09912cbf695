"""Enrichment: PMC and Crossref columns on articles, runs, provenance, disagreements, history, conflicts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Written out in full, as 0001. Downgrade drops exactly what upgrade adds (tables in reverse order, then the
articles columns); SQLite drops a column in place (3.35+), as none of these is indexed or constrained.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ARTICLE_COLUMNS: tuple[tuple[str, type[sa.types.TypeEngine[object]]], ...] = (
    ("license_url", sa.Text),
    ("license_type", sa.Text),
    ("copyright", sa.Text),
    ("copyright_year", sa.Integer),
    ("citation_count", sa.Integer),
    ("references_count", sa.Integer),
    ("crossref_type", sa.Text),
    ("crossref_status", sa.Text),
    ("pmc_status", sa.Text),
)

# Tables in creation order; dropped in reverse.
TABLES = (
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
)


def _text(name: str, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _timestamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _article_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["article_id"], ["articles.id"], name=op.f(f"fk_{table}_article_id_articles"), ondelete="CASCADE"
    )


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["harvest_runs.id"], name=op.f(f"fk_{table}_run_id_harvest_runs"), ondelete="SET NULL"
    )


def _child_table(name: str, *columns: sa.Column[object] | sa.Constraint, key: Sequence[str] = ()) -> None:
    """A table keyed by (article_id, *key, position), deleted with its article."""
    op.create_table(
        name,
        _int("article_id"),
        *[_int(column) if column != "source" else _text(column, nullable=False) for column in key],
        _int("position"),
        *columns,
        _article_fk(name),
        sa.PrimaryKeyConstraint("article_id", *key, "position", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    for name, type_ in ARTICLE_COLUMNS:
        op.add_column("articles", sa.Column(name, type_(), nullable=True))

    op.create_table(
        "harvest_runs",
        _int("id"),
        _text("command", nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        _text("status", nullable=False),
        _text("summary"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_harvest_runs")),
    )
    op.create_table(
        "field_provenance",
        _int("article_id"),
        _text("field", nullable=False),
        _text("source", nullable=False),
        _text("source_id", nullable=False),
        _timestamp("fetched_at"),
        _article_fk("field_provenance"),
        sa.PrimaryKeyConstraint("article_id", "field", name=op.f("pk_field_provenance")),
    )
    op.create_table(
        "field_disagreements",
        _int("article_id"),
        _text("field", nullable=False),
        _text("source", nullable=False),
        _text("value"),
        _text("other_source", nullable=False),
        _text("other_value"),
        _timestamp("detected_at"),
        _article_fk("field_disagreements"),
        sa.PrimaryKeyConstraint(
            "article_id", "field", "source", "other_source", name=op.f("pk_field_disagreements")
        ),
    )
    op.create_table(
        "article_history",
        _int("id"),
        _int("article_id"),
        _text("field", nullable=False),
        _text("old_value"),
        _text("new_value"),
        _text("source", nullable=False),
        _int("run_id", nullable=True),
        _timestamp("changed_at"),
        _article_fk("article_history"),
        _run_fk("article_history"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_history")),
    )
    op.create_index(op.f("ix_article_history_article_id"), "article_history", ["article_id"])
    op.create_table(
        "conflicts",
        _int("id"),
        _text("source", nullable=False),
        _text("source_id", nullable=False),
        _text("claims", nullable=False),
        _text("article_ids", nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        _timestamp("detected_at"),
        _int("run_id", nullable=True),
        _run_fk("conflicts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflicts")),
        sa.UniqueConstraint(
            "source", "source_id", "article_ids", name=op.f("uq_conflicts_source_source_id_article_ids")
        ),
    )

    _child_table("article_subjects", _text("subject", nullable=False))
    _child_table("article_licenses", _text("url"), _text("license_type"), _text("text"), _text("start_date"))
    _child_table("article_funders", _text("name"), _text("funder_doi"))
    _child_table(
        "funder_awards",
        _text("award_id", nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id", "funder_position"],
            ["article_funders.article_id", "article_funders.position"],
            name=op.f("fk_funder_awards_article_id_funder_position_article_funders"),
            ondelete="CASCADE",
        ),
        key=("funder_position",),
    )
    _child_table(
        "article_updates",
        _text("kind", nullable=False),
        _text("direction", nullable=False),
        _text("doi"),
        _text("asserted_by"),
        _text("update_date"),
        _text("label"),
    )
    _child_table("retraction_sources", _text("statement", nullable=False), _text("notice"), key=("source",))
    _child_table("article_clinical_trials", _text("number", nullable=False))


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)  # with its indexes, on both dialects
    for name, _type in reversed(ARTICLE_COLUMNS):
        op.drop_column("articles", name)
