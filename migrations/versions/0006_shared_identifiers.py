"""Shared identifiers: articles.doi and articles.pmcid indexed, not unique; each article's own journal facts;
conflicts settled by hand; a source record current for several articles; view report_shared_identifiers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Two PubMed records (two PMIDs) may name one DOI or PMCID (the versions of a Cochrane review share one DOI):
each article now holds its own record's values. Upgrade fills the DOI and PMCID an article lost to
another under the old rule from its own ArticleIds (article_identifiers), and settles the conflicts the
old rule recorded for PubMed records (each was a shared identifier): status "resolved", resolution
"shared". ``articles.journal_facts`` starts empty: an article stored before shows its journal row until
its record is stored again.

SQLite rebuilds ``articles`` (batch mode) to drop the unique constraints: db.engine runs SQLite migrations
with foreign keys off (else dropping the old table would cascade to every child row) and
legacy_alter_table on (the views that read articles stay as they are), and checks the keys before commit.

``source_records`` is unique on (source, source_id, article_id): a Crossref work or PMC record whose DOI
or PMCID several PubMed articles share is the current record of each.

Downgrade: the lowest article id keeps a source record current for several, and a shared value in the
column (the others keep it in article_identifiers), then the unique constraints come back; "ignored"
conflicts become "resolved".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CREATE_SHARED_IDENTIFIERS = """
CREATE VIEW report_shared_identifiers AS
SELECT s.id_type AS id_type,
       s.value AS value,
       s.articles AS articles,
       a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title,
       a.in_pubmed AS in_pubmed
FROM (
    SELECT 'doi' AS id_type, doi AS value, COUNT(*) AS articles
    FROM articles WHERE doi IS NOT NULL AND NOT deleted GROUP BY doi HAVING COUNT(*) > 1
    UNION ALL
    SELECT 'pmcid' AS id_type, pmcid AS value, COUNT(*) AS articles
    FROM articles WHERE pmcid IS NOT NULL AND NOT deleted GROUP BY pmcid HAVING COUNT(*) > 1
) s
JOIN articles a
  ON ((s.id_type = 'doi' AND a.doi = s.value) OR (s.id_type = 'pmcid' AND a.pmcid = s.value))
 AND NOT a.deleted
"""

# The article's own first DOI / PMCID among its ArticleIds, for articles that lost theirs to another.
_FILL_DOI = """
UPDATE articles SET doi = (
    SELECT i.value FROM article_identifiers i
    WHERE i.article_id = articles.id AND i.id_type = 'doi' ORDER BY i.position LIMIT 1)
WHERE doi IS NULL AND pmid IS NOT NULL
  AND EXISTS (SELECT 1 FROM article_identifiers i WHERE i.article_id = articles.id AND i.id_type = 'doi')
"""
_FILL_PMCID = """
UPDATE articles SET pmcid = (
    SELECT UPPER(i.value) FROM article_identifiers i
    WHERE i.article_id = articles.id AND i.id_type = 'pmc' AND UPPER(i.value) LIKE 'PMC%'
    ORDER BY i.position LIMIT 1)
WHERE pmcid IS NULL AND pmid IS NOT NULL
  AND EXISTS (SELECT 1 FROM article_identifiers i
              WHERE i.article_id = articles.id AND i.id_type = 'pmc' AND UPPER(i.value) LIKE 'PMC%')
"""
# Downgrade: a value held by several articles stays with the lowest id.
_UNSHARE_DOI = """
UPDATE articles SET doi = NULL
WHERE doi IS NOT NULL
  AND EXISTS (SELECT 1 FROM articles o WHERE o.doi = articles.doi AND o.id < articles.id)
"""
_UNSHARE_PMCID = """
UPDATE articles SET pmcid = NULL
WHERE pmcid IS NOT NULL
  AND EXISTS (SELECT 1 FROM articles o WHERE o.pmcid = articles.pmcid AND o.id < articles.id)
"""


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_constraint(op.f("uq_articles_doi"), type_="unique")
        batch.drop_constraint(op.f("uq_articles_pmcid"), type_="unique")
        batch.add_column(sa.Column("journal_facts", sa.Text(), nullable=True))
        batch.create_index(op.f("ix_articles_doi"), ["doi"])
        batch.create_index(op.f("ix_articles_pmcid"), ["pmcid"])
    with op.batch_alter_table("conflicts") as batch:
        batch.add_column(sa.Column("resolution", sa.Text(), nullable=True))
        batch.add_column(sa.Column("kept_article_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key(
            op.f("fk_conflicts_kept_article_id_articles"),
            "articles",
            ["kept_article_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("source_records") as batch:
        batch.drop_constraint(op.f("uq_source_records_source_source_id"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_source_records_source_source_id_article_id"), ["source", "source_id", "article_id"]
        )
    op.execute(_FILL_DOI)
    op.execute(_FILL_PMCID)
    op.execute(
        "UPDATE conflicts SET status = 'resolved', resolution = 'shared' "
        "WHERE source = 'pubmed' AND status = 'open'"
    )
    op.execute(_CREATE_SHARED_IDENTIFIERS.strip())


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS report_shared_identifiers")
    op.execute("UPDATE conflicts SET status = 'resolved' WHERE status = 'ignored'")
    with op.batch_alter_table("conflicts") as batch:
        batch.drop_constraint(op.f("fk_conflicts_kept_article_id_articles"), type_="foreignkey")
        batch.drop_column("resolved_at")
        batch.drop_column("kept_article_id")
        batch.drop_column("resolution")
    # A record current for several articles stays with the lowest article id.
    op.execute(
        "DELETE FROM source_records WHERE EXISTS (SELECT 1 FROM source_records o WHERE o.source = "
        "source_records.source AND o.source_id = source_records.source_id "
        "AND o.article_id < source_records.article_id)"
    )
    with op.batch_alter_table("source_records") as batch:
        batch.drop_constraint(op.f("uq_source_records_source_source_id_article_id"), type_="unique")
        batch.create_unique_constraint(op.f("uq_source_records_source_source_id"), ["source", "source_id"])
    op.execute(_UNSHARE_DOI)
    op.execute(_UNSHARE_PMCID)
    with op.batch_alter_table("articles") as batch:
        batch.drop_index(op.f("ix_articles_pmcid"))
        batch.drop_index(op.f("ix_articles_doi"))
        batch.drop_column("journal_facts")
        batch.create_unique_constraint(op.f("uq_articles_pmcid"), ["pmcid"])
        batch.create_unique_constraint(op.f("uq_articles_doi"), ["doi"])
