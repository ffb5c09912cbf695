"""Look-ups that back off: per article and source, the "not found" answers since the source last knew it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

A table of its own (see db.models.LookupBackoff and db.lookups), so that recording a repeated "not found"
never writes the article's row, and the same day's answer writes nothing at all. Articles that were "not
found" before this migration have no row: they are asked again on their usual schedule, and their next
"not found" starts the back-off. Downgrade drops the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lookup_backoff",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("asked_id", sa.Text(), nullable=False),
        sa.Column("first_missed", sa.Date(), nullable=False),
        sa.Column("last_missed", sa.Date(), nullable=False),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_lookup_backoff_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", "source", name=op.f("pk_lookup_backoff")),
    )


def downgrade() -> None:
    op.drop_table("lookup_backoff")
