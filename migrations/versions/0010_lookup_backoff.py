"""Look-ups that back off: per article and source, consecutive "not found" answers and the last one's time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

An article PMC or Crossref did not know is asked again only after 1, 2, 4, ... days (capped) from its
last "not found" answer (db.targets.stale_article_ids); a "found" answer resets both columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = ("pmc", "crossref")


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        for source in _SOURCES:
            batch.add_column(sa.Column(f"{source}_misses", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(sa.Column(f"{source}_missed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        for source in reversed(_SOURCES):
            batch.drop_column(f"{source}_missed_at")
            batch.drop_column(f"{source}_misses")
