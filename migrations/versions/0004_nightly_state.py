"""Nightly state: search watermarks, per-search run detail, the run lock's holder, run owner columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Written out in full, as 0001. Downgrade drops exactly what upgrade adds (tables in reverse order, then the
harvest_runs columns; SQLite drops a column in place, 3.35+, as none of them is indexed or constrained).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("search_states", "run_searches", "run_locks")  # in creation order; dropped in reverse


def _text(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _date(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.Date(), nullable=nullable)


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.add_column("harvest_runs", sa.Column("pid", sa.Integer(), nullable=True))
    op.add_column("harvest_runs", sa.Column("host", sa.Text(), nullable=True))
    op.add_column(
        "harvest_runs", sa.Column("locked", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_table(
        "search_states",
        _int("id"),
        _text("name"),
        _text("query"),
        _text("datetype"),
        _date("watermark"),
        _int("last_verified_run_id", nullable=True),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["last_verified_run_id"],
            ["harvest_runs.id"],
            name=op.f("fk_search_states_last_verified_run_id_harvest_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_states")),
        sa.UniqueConstraint("name", name=op.f("uq_search_states_name")),
    )
    op.create_table(
        "run_searches",
        _int("run_id"),
        _text("search"),
        _text("query"),
        _text("datetype"),
        _date("window_start", nullable=False),
        _date("window_end", nullable=False),
        _int("expected"),
        _int("fetched"),
        _int("created"),
        _int("updated"),
        _int("unchanged"),
        sa.Column("verified", sa.Boolean(), nullable=False),
        _date("watermark_before"),
        _date("watermark_after"),
        _text("failed_ids"),
        _text("errors"),
        _timestamp("finished_at"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["harvest_runs.id"],
            name=op.f("fk_run_searches_run_id_harvest_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "search", name=op.f("pk_run_searches")),
    )
    op.create_table(
        "run_locks",
        _text("name"),
        _text("purpose"),
        _int("pid"),
        _text("host"),
        _timestamp("acquired_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_run_locks")),
    )


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
    for name in ("locked", "host", "pid"):
        op.drop_column("harvest_runs", name)
