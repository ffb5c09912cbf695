"""Request budgets: the send slots that every harvest process on every host reserves (issue 12, item 4).

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-01

One row per service and key hash in ``request_budgets`` (never the key itself: a salted PBKDF2 hash of
the service's address and key, with the database's own salt in ``request_budget_salt``, made on first
use). Only PostgreSQL databases use them (db/budget.py); on SQLite the tables stay empty, as the
processes of one user share the pacing file instead. Downgrade drops both tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_budgets",
        sa.Column("service", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("sends", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("service", "key_hash", name=op.f("pk_request_budgets")),
    )
    op.create_table(
        "request_budget_salt",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("salt", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_budget_salt")),
    )


def downgrade() -> None:
    op.drop_table("request_budget_salt")
    op.drop_table("request_budgets")
