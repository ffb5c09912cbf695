"""Reporting views (report_*) and the index that finds a run's history rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Written out in full, as 0001: the SQL here stays what it was when later models change. Each view names
its columns (never ``*``), so a later migration may add or drop other columns of the tables they read; a
migration that changes a column a view reads must drop and re-create that view. Every view leaves out
deleted articles (``articles.deleted``, set by a PubMed DeleteCitation): ``NOT a.deleted`` reads
SQLite's 0/1 and PostgreSQL's boolean alike. The SQL is the same on both dialects but for two fragments:
joining a list in order (SQLite group_concat over an ordered subquery, PostgreSQL string_agg ... ORDER BY)
and splitting ``conflicts.article_ids`` (json_each, unnest).
db/reporting.py lists the views and their columns; docs/reporting.md documents them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ARTICLES_BY_YEAR_JOURNAL = """
SELECT a.pub_year AS pub_year,
       j.journal_key AS journal_key,
       j.title AS journal_title,
       j.iso_abbrev AS journal_iso_abbrev,
       COALESCE(j.issn_print, j.issn_electronic, j.issn_linking) AS issn,
       COUNT(*) AS articles
FROM articles a
LEFT JOIN journals j ON j.id = a.journal_id
WHERE NOT a.deleted
GROUP BY a.pub_year, j.id, j.journal_key, j.title, j.iso_abbrev, j.issn_print, j.issn_electronic,
         j.issn_linking
"""

_AFFILIATIONS = {
    "sqlite": """(SELECT group_concat(affiliation, '; ') FROM (
            SELECT af.affiliation AS affiliation FROM author_affiliations af
            WHERE af.article_id = au.article_id AND af.author_position = au.position
            ORDER BY af.position))""",
    "postgresql": """(SELECT string_agg(af.affiliation, '; ' ORDER BY af.position)
            FROM author_affiliations af
            WHERE af.article_id = au.article_id AND af.author_position = au.position)""",
}

_AUTHOR_ARTICLES = """
SELECT au.orcid AS orcid,
       au.last_name AS last_name,
       au.fore_name AS fore_name,
       au.initials AS initials,
       au.suffix AS suffix,
       au.collective_name AS collective_name,
       au.position AS author_position,
       {affiliations} AS affiliations,
       a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title,
       a.pub_year AS pub_year,
       j.title AS journal_title
FROM authors au
JOIN articles a ON a.id = au.article_id
LEFT JOIN journals j ON j.id = a.journal_id
WHERE NOT a.deleted
"""

# PubMed's "major topic" ([majr]): the descriptor or any of its qualifiers is marked MajorTopicYN="Y".
_MESH_TERM_COUNTS = """
SELECT h.descriptor_ui AS descriptor_ui,
       h.descriptor AS descriptor,
       COUNT(DISTINCT h.article_id) AS articles,
       COUNT(DISTINCT CASE WHEN h.major OR EXISTS (
                SELECT 1 FROM mesh_qualifiers q
                WHERE q.article_id = h.article_id AND q.heading_position = h.position AND q.major)
            THEN h.article_id END) AS major_topic_articles
FROM mesh_headings h
JOIN articles a ON a.id = h.article_id
WHERE NOT a.deleted
GROUP BY h.descriptor_ui, h.descriptor
"""

_RETRACTIONS = """
SELECT a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title,
       a.pub_year AS pub_year,
       j.title AS journal_title,
       r.source AS source,
       r.position AS position,
       r.statement AS statement,
       r.notice AS notice
FROM retraction_sources r
JOIN articles a ON a.id = r.article_id
LEFT JOIN journals j ON j.id = a.journal_id
WHERE NOT a.deleted
"""

# Open access: a Creative Commons licence or public-domain mark, or a licence its source calls open access
# (JATS license-type "open-access", as PMC writes it).
_LICENSE_COUNTS = """
SELECT a.license_url AS license_url,
       a.license_type AS license_type,
       CASE WHEN LOWER(a.license_url) LIKE '%creativecommons.org/licenses/%'
              OR LOWER(a.license_url) LIKE '%creativecommons.org/publicdomain/%'
              OR LOWER(a.license_type) LIKE 'open%access'
            THEN TRUE ELSE FALSE END AS open_access,
       COUNT(*) AS articles
FROM articles a
WHERE NOT a.deleted
GROUP BY a.license_url, a.license_type
"""

_CITATION_COUNTS = """
SELECT a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title,
       a.pub_year AS pub_year,
       j.title AS journal_title,
       a.citation_count AS citation_count,
       a.references_count AS references_count,
       a.crossref_status AS crossref_status
FROM articles a
LEFT JOIN journals j ON j.id = a.journal_id
WHERE NOT a.deleted
"""

# The latest finished run (by finished_at, then id) that recorded any history row.
_LAST_RUN_CHANGES = """
SELECT r.id AS run_id,
       r.command AS command,
       r.status AS run_status,
       r.finished_at AS run_finished_at,
       h.id AS change_id,
       a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       h.field AS field,
       h.old_value AS old_value,
       h.new_value AS new_value,
       h.source AS source,
       h.changed_at AS changed_at
FROM article_history h
JOIN harvest_runs r ON r.id = h.run_id
JOIN articles a ON a.id = h.article_id
WHERE NOT a.deleted
  AND r.id = (
      SELECT r2.id FROM harvest_runs r2
      WHERE r2.finished_at IS NOT NULL
        AND EXISTS (SELECT 1 FROM article_history h2 WHERE h2.run_id = r2.id)
      ORDER BY r2.finished_at DESC, r2.id DESC
      LIMIT 1)
"""

_CONFLICT_ARTICLE_IDS = {
    "sqlite": "json_each('[' || c.article_ids || ']') e JOIN articles a ON a.id = e.value",
    "postgresql": "LATERAL unnest(string_to_array(c.article_ids, ',')::integer[]) AS e(article_id) "
    "JOIN articles a ON a.id = e.article_id",
}

_OPEN_CONFLICTS = """
SELECT c.id AS conflict_id,
       c.source AS source,
       c.source_id AS source_id,
       c.detected_at AS detected_at,
       c.run_id AS run_id,
       c.claims AS claims,
       a.id AS article_id,
       a.pmid AS pmid,
       a.doi AS doi,
       a.pmcid AS pmcid,
       a.title AS title
FROM conflicts c
CROSS JOIN {article_ids}
WHERE c.status = 'open' AND NOT a.deleted
"""


def _views(dialect: str) -> dict[str, str]:
    """Each view's SELECT, in creation order."""
    return {
        "report_articles_by_year_journal": _ARTICLES_BY_YEAR_JOURNAL,
        "report_author_articles": _AUTHOR_ARTICLES.format(affiliations=_AFFILIATIONS[dialect]),
        "report_mesh_term_counts": _MESH_TERM_COUNTS,
        "report_retractions": _RETRACTIONS,
        "report_license_counts": _LICENSE_COUNTS,
        "report_citation_counts": _CITATION_COUNTS,
        "report_last_run_changes": _LAST_RUN_CHANGES,
        "report_open_conflicts": _OPEN_CONFLICTS.format(article_ids=_CONFLICT_ARTICLE_IDS[dialect]),
    }


def upgrade() -> None:
    # report_last_run_changes finds a run's rows by run_id; without this it reads all of article_history.
    op.create_index(op.f("ix_article_history_run_id"), "article_history", ["run_id"])
    for name, select in _views(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {select.strip()}")


def downgrade() -> None:
    for name in reversed(_views(op.get_bind().dialect.name)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index(op.f("ix_article_history_run_id"), table_name="article_history")
