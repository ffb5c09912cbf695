"""PostgreSQL: the PubMed child tables' references to their article are kept by the store and by
statement-level cascade triggers instead of per-row foreign-key checks.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

Why (issue 12): a foreign key on PostgreSQL checks every inserted row on its own (a query that locks the
referenced row, run once per row after the statement). The 14 child tables a PubMed record fills get about
1.3 million rows per 30,000-record file (43 a record), and those checks took half of the server's CPU of a
first load (12.4 against 6.7 CPU s; wall time 22.5 against 17.4 s, bench/bench_store.py). Statement-level
triggers that check each batch of new rows against the parent as a set were measured too and cost nearly
as much (11.2 to 11.7 CPU s): the server copies every new row into a transition table.

What changes, on PostgreSQL only:

- The foreign keys of the 14 tables of ``db.pubmed_rows.CHILD_TABLES`` are dropped (16 constraints:
  author_affiliations and mesh_qualifiers had one to articles besides the one to their parent row).
  Their rows are written only by the store, in the transaction that inserted or looked up the article
  under its write lock (see db.store), so every article_id it writes names an article of that same
  transaction.
- What ON DELETE CASCADE did stays: deleting articles deletes their rows in the 12 tables that name the
  article, deleting authors deletes their author_affiliations, deleting mesh headings their
  mesh_qualifiers (one trigger per parent table and statement, reading the deleted rows as a set), and
  ``TRUNCATE articles`` empties the 14 tables as well.
- What is no longer checked: a row inserted by hand with an article_id no article has is accepted, and so
  is changing an article's id or a parent row's position (the store never does either; articles.id is
  still referenced by foreign keys of the other tables, so it cannot be changed for an article that has
  a source record).

SQLite keeps its foreign keys: it checks each row with an index look-up in C, far cheaper, and changing
them would rebuild the 14 tables. Downgrade drops the triggers and functions and adds the 16 foreign keys
back (which checks every stored row: a row added by hand without its article makes it fail).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (child table, its columns, the parent table, the parent's columns) as the dropped foreign keys had them.
_REFERENCES: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("article_identifiers", ("article_id",), "articles", ("id",)),
    ("authors", ("article_id",), "articles", ("id",)),
    ("author_affiliations", ("article_id",), "articles", ("id",)),
    ("author_affiliations", ("article_id", "author_position"), "authors", ("article_id", "position")),
    ("abstract_sections", ("article_id",), "articles", ("id",)),
    ("article_dates", ("article_id",), "articles", ("id",)),
    ("article_languages", ("article_id",), "articles", ("id",)),
    ("publication_types", ("article_id",), "articles", ("id",)),
    ("mesh_headings", ("article_id",), "articles", ("id",)),
    ("mesh_qualifiers", ("article_id", "heading_position"), "mesh_headings", ("article_id", "position")),
    ("mesh_qualifiers", ("article_id",), "articles", ("id",)),
    ("keywords", ("article_id",), "articles", ("id",)),
    ("chemicals", ("article_id",), "articles", ("id",)),
    ("grants", ("article_id",), "articles", ("id",)),
    ("comments_corrections", ("article_id",), "articles", ("id",)),
    ("article_references", ("article_id",), "articles", ("id",)),
)
# A row of author_affiliations / mesh_qualifiers goes with its author / heading, which goes with the article.
_CASCADES: dict[str, tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = {
    parent: tuple(
        (child, columns, parent_columns)
        for child, columns, referenced, parent_columns in _REFERENCES
        if referenced == parent
        and not (parent == "articles" and child in ("author_affiliations", "mesh_qualifiers"))
    )
    for parent in ("articles", "authors", "mesh_headings")
}


def _name(child: str, columns: tuple[str, ...], parent: str) -> str:
    return f"fk_{child}_{'_'.join(columns)}_{parent}"  # the naming convention of db.models


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for child, columns, parent, _ in _REFERENCES:
        op.drop_constraint(_name(child, columns, parent), child, type_="foreignkey")
    for parent, children in _CASCADES.items():
        # Table and column names from the constants above, never from input.
        deletes = "\n".join(
            f"  DELETE FROM {child} AS c USING deleted AS d WHERE "  # noqa: S608
            + " AND ".join(f"c.{col} = d.{key}" for col, key in zip(columns, keys, strict=True))
            + ";"
            for child, columns, keys in children
        )
        op.execute(
            f"CREATE FUNCTION harvest_cascade_{parent}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{deletes}\n  RETURN NULL;\nEND $$"
        )
        op.execute(
            f"CREATE TRIGGER harvest_cascade_{parent} AFTER DELETE ON {parent}"
            " REFERENCING OLD TABLE AS deleted"
            f" FOR EACH STATEMENT EXECUTE FUNCTION harvest_cascade_{parent}()"
        )
    children = sorted({child for child, *_ in _REFERENCES})
    op.execute(
        "CREATE FUNCTION harvest_truncate_articles() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n  TRUNCATE {', '.join(children)};\n  RETURN NULL;\nEND $$"
    )
    op.execute(
        "CREATE TRIGGER harvest_truncate_articles AFTER TRUNCATE ON articles"
        " FOR EACH STATEMENT EXECUTE FUNCTION harvest_truncate_articles()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER harvest_truncate_articles ON articles")
    op.execute("DROP FUNCTION harvest_truncate_articles()")
    for parent in _CASCADES:
        op.execute(f"DROP TRIGGER harvest_cascade_{parent} ON {parent}")
        op.execute(f"DROP FUNCTION harvest_cascade_{parent}()")
    for child, columns, parent, keys in _REFERENCES:
        op.create_foreign_key(
            _name(child, columns, parent), child, parent, list(columns), list(keys), ondelete="CASCADE"
        )
