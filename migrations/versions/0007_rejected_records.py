"""Rejected records: PubMed records that could not be parsed or stored, kept raw with the reason.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01

``harvest ingest`` applies the rest of a file, and ``harvest pmid`` (search, nightly) the rest of an efetch
answer, and each keeps such a record here, so that a fixed release can parse it again: nothing is lost.
Downgrade drops the one table (with its index).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rejected_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("file_sha256", sa.Text(), nullable=True),
        sa.Column("pmid", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_xml", sa.LargeBinary(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["harvest_runs.id"],
            name=op.f("fk_rejected_records_run_id_harvest_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_records")),
    )
    op.create_index(op.f("ix_rejected_records_pmid"), "rejected_records", ["pmid"])


def downgrade() -> None:
    op.drop_table("rejected_records")  # with its index, on both dialects
