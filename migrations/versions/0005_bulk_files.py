"""Bulk files: the PubMed baseline and update files applied by ``harvest ingest``, with checksums.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Written out in full, as 0001. Downgrade drops the one table (with its index) that upgrade adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("release_year", sa.Integer(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["harvest_runs.id"],
            name=op.f("fk_bulk_files_run_id_harvest_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_files")),
        sa.UniqueConstraint("sha256", name=op.f("uq_bulk_files_sha256")),
    )
    op.create_index(op.f("ix_bulk_files_release_year_sequence"), "bulk_files", ["release_year", "sequence"])


def downgrade() -> None:
    op.drop_table("bulk_files")  # with its index, on both dialects
