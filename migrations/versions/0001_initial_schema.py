"""Initial schema: articles, journals, their child tables, raw payloads and source records.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Written out in full (not imported from db.models) so that it stays what it was when later models change.
Constraint names follow db.models.NAMING_CONVENTION.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Child tables of articles in creation order; dropped in reverse.
CHILD_TABLES = (
    "article_identifiers",
    "authors",
    "author_affiliations",
    "abstract_sections",
    "article_dates",
    "article_languages",
    "publication_types",
    "mesh_headings",
    "mesh_qualifiers",
    "keywords",
    "chemicals",
    "grants",
    "comments_corrections",
    "article_references",
)


def _text(name: str, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _int(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _bool(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _child_table(name: str, *columns: sa.Column[object] | sa.Constraint, key: Sequence[str] = ()) -> None:
    """A table keyed by (article_id, *key, position), deleted with its article."""
    op.create_table(
        name,
        _int("article_id"),
        *[_int(column) for column in key],
        _int("position"),
        *columns,
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name=op.f(f"fk_{name}_article_id_articles"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("article_id", *key, "position", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    op.create_table(
        "journals",
        _int("id"),
        _text("journal_key", nullable=False),
        _text("title"),
        _text("iso_abbrev"),
        _text("medline_ta"),
        _text("nlm_unique_id"),
        _text("issn_print"),
        _text("issn_electronic"),
        _text("issn_linking"),
        _text("country"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journals")),
        sa.UniqueConstraint("journal_key", name=op.f("uq_journals_journal_key")),
    )
    op.create_table(
        "raw_payloads",
        _int("id"),
        _text("source", nullable=False),
        _text("source_id", nullable=False),
        _text("sha256", nullable=False),
        _text("url"),
        _timestamp("fetched_at"),
        _text("content_encoding", nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _int("size"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_payloads")),
        sa.UniqueConstraint("source", "sha256", name=op.f("uq_raw_payloads_source_sha256")),
    )
    op.create_index(op.f("ix_raw_payloads_source_source_id"), "raw_payloads", ["source", "source_id"])

    op.create_table(
        "articles",
        _int("id"),
        _text("pmid"),
        _int("pmid_version", nullable=True),
        _text("pmcid"),
        _text("doi"),
        _text("record_type"),
        _text("title"),
        _text("vernacular_title"),
        _text("abstract"),
        _text("abstract_copyright"),
        _int("journal_id", nullable=True),
        _text("volume"),
        _text("issue"),
        _text("pages"),
        _text("pub_date"),
        _int("pub_year", nullable=True),
        _int("pub_month", nullable=True),
        _int("pub_day", nullable=True),
        _text("pub_season"),
        _text("pub_date_raw"),
        _text("epub_date"),
        _text("medline_status"),
        _text("publication_status"),
        _text("date_completed"),
        _text("date_revised"),
        _text("coi_statement"),
        _text("book_title"),
        _text("publisher"),
        sa.Column("retracted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("in_pubmed", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        _text("content_sha256"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["journal_id"], ["journals.id"], name=op.f("fk_articles_journal_id_journals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_articles")),
        sa.UniqueConstraint("pmid", name=op.f("uq_articles_pmid")),
        sa.UniqueConstraint("pmcid", name=op.f("uq_articles_pmcid")),
        sa.UniqueConstraint("doi", name=op.f("uq_articles_doi")),
    )
    op.create_index(op.f("ix_articles_journal_id"), "articles", ["journal_id"])
    op.create_index(op.f("ix_articles_pub_year"), "articles", ["pub_year"])

    op.create_table(
        "article_identifiers",
        _int("article_id"),
        _text("id_type", nullable=False),
        _text("value", nullable=False),
        _int("position"),
        _bool("valid"),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_identifiers_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", "id_type", "value", name=op.f("pk_article_identifiers")),
    )
    op.create_index(op.f("ix_article_identifiers_id_type_value"), "article_identifiers", ["id_type", "value"])

    _child_table(
        "authors",
        _text("last_name"),
        _text("fore_name"),
        _text("initials"),
        _text("suffix"),
        _text("collective_name"),
        _text("orcid"),
        _bool("valid"),
        _bool("equal_contrib"),
    )
    op.create_index(op.f("ix_authors_orcid"), "authors", ["orcid"])
    _child_table(
        "author_affiliations",
        _text("affiliation", nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id", "author_position"],
            ["authors.article_id", "authors.position"],
            name=op.f("fk_author_affiliations_article_id_author_position_authors"),
            ondelete="CASCADE",
        ),
        key=("author_position",),
    )
    _child_table(
        "abstract_sections",
        _text("kind", nullable=False),
        _text("language"),
        _text("label"),
        _text("nlm_category"),
        _text("text", nullable=False),
        key=("abstract_index",),
    )
    _child_table(
        "article_dates",
        _text("kind", nullable=False),
        _int("year", nullable=True),
        _int("month", nullable=True),
        _int("day", nullable=True),
        _text("iso"),
        _text("raw"),
    )
    _child_table("article_languages", _text("language", nullable=False))
    _child_table("publication_types", _text("ui"), _text("name", nullable=False))
    _child_table(
        "mesh_headings",
        _text("descriptor_ui"),
        _text("descriptor", nullable=False),
        _bool("major"),
        _text("descriptor_type"),
    )
    op.create_index(op.f("ix_mesh_headings_descriptor_ui"), "mesh_headings", ["descriptor_ui"])
    _child_table(
        "mesh_qualifiers",
        _text("qualifier_ui"),
        _text("qualifier", nullable=False),
        _bool("major"),
        sa.ForeignKeyConstraint(
            ["article_id", "heading_position"],
            ["mesh_headings.article_id", "mesh_headings.position"],
            name=op.f("fk_mesh_qualifiers_article_id_heading_position_mesh_headings"),
            ondelete="CASCADE",
        ),
        key=("heading_position",),
    )
    _child_table("keywords", _text("owner"), _text("keyword", nullable=False), _bool("major"))
    _child_table("chemicals", _text("name", nullable=False), _text("registry_number"), _text("ui"))
    _child_table("grants", _text("grant_id"), _text("acronym"), _text("agency"), _text("country"))
    _child_table(
        "comments_corrections",
        _text("ref_type", nullable=False),
        _text("ref_source"),
        _text("ref_pmid"),
        _text("note"),
    )
    op.create_index(op.f("ix_comments_corrections_ref_pmid"), "comments_corrections", ["ref_pmid"])
    _child_table("article_references", _text("citation"), _text("pmid"), _text("doi"), _text("pmcid"))

    op.create_table(
        "source_records",
        _int("id"),
        _int("article_id"),
        _text("source", nullable=False),
        _text("source_id", nullable=False),
        _int("payload_id"),
        _timestamp("fetched_at"),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_source_records_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["payload_id"], ["raw_payloads.id"], name=op.f("fk_source_records_payload_id_raw_payloads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_records")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_source_records_source_source_id")),
    )
    op.create_index(op.f("ix_source_records_article_id"), "source_records", ["article_id"])
    op.create_index(op.f("ix_source_records_payload_id"), "source_records", ["payload_id"])


def downgrade() -> None:
    # Dropping a table drops its indexes on both dialects.
    op.drop_table("source_records")
    for name in reversed(CHILD_TABLES):
        op.drop_table(name)
    op.drop_table("articles")
    op.drop_table("raw_payloads")
    op.drop_table("journals")
