"""The relational schema: one ``articles`` row per article, child tables keyed by (article_id, position).

The models describe the schema that ``migrations/`` creates; the migrations are the only way it changes,
and a test checks that Alembic's autogenerate finds no difference between the two.

Design notes:

- Child tables have no surrogate key: (article_id, position) is the primary key (for article_identifiers
  (article_id, id_type, value)) and ``position`` counts from 1 in the source's order, so a changed record
  is stored by deleting and re-inserting its children and bulk inserts need no RETURNING.
- ``article_identifiers`` holds every ArticleId (id_type as PubMed names it: "pubmed", "doi", "pmc",
  "pii", "mid", ...) and every ELocationID (id_type "eloc:doi", "eloc:pii"; ``valid`` false for
  ValidYN="N"), so one indexed (id_type, value) lookup finds an article by any id. DOI values are stored
  lower-case there as in ``articles.doi``.
- ``articles.doi`` and ``articles.pmcid`` are indexed, not unique (migration 0006): each article holds its
  own record's DOI and PMCID, and two PubMed records (two PMIDs) may name the same one, as the versions of
  a Cochrane review do. View ``report_shared_identifiers`` lists them.
- ``articles.journal_facts`` is JSON: the journal as the article's own record gave it (title, ISSNs, ...),
  while the ``journals`` row it points at may hold values merged from other articles' records.
- Timestamps are timezone-aware UTC on both dialects (:class:`UtcDateTime`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; SQLite keeps no offset, so it is put back on reading."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        str: sa.Text(),
        int: sa.Integer(),
        bool: sa.Boolean(),
        datetime: UtcDateTime(),
        bytes: sa.LargeBinary(),
    }


def _article_fk() -> sa.ForeignKey:
    return sa.ForeignKey("articles.id", ondelete="CASCADE")


# The tables a PubMed record fills besides articles, in insertion order (a referenced table before the
# table that references it): db.pubmed_rows.CHILD_TABLES. Their foreign keys are constraints on SQLite; on
# PostgreSQL (migration 0014) they are not: the store writes these rows only for articles of its own
# transaction, and triggers delete them with their article, author or heading, as ON DELETE CASCADE did. A
# per-row foreign-key check there took half of the server's CPU of a first load.
PUBMED_CHILD_TABLES: tuple[str, ...] = (
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


class Journal(Base):
    """A journal, found by ``journal_key``: "nlm:<NlmUniqueID>", else "issn:<ISSN>", else "title:..."."""

    __tablename__ = "journals"

    id: Mapped[int] = mapped_column(primary_key=True)
    journal_key: Mapped[str] = mapped_column(unique=True)
    title: Mapped[str | None]
    iso_abbrev: Mapped[str | None]
    medline_ta: Mapped[str | None]
    nlm_unique_id: Mapped[str | None]
    issn_print: Mapped[str | None]
    issn_electronic: Mapped[str | None]
    issn_linking: Mapped[str | None]
    country: Mapped[str | None]


class Article(Base):
    """One article as it stands now; every field from PubMed is also in the kept raw payload."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    pmid: Mapped[str | None] = mapped_column(unique=True)  # None for an article known only elsewhere
    pmid_version: Mapped[int | None]
    pmcid: Mapped[str | None] = mapped_column(index=True)  # not unique: see the module docstring
    doi: Mapped[str | None] = mapped_column(index=True)  # lower-case; not unique
    record_type: Mapped[str | None]  # "journal-article" or "book-article"
    title: Mapped[str | None]
    vernacular_title: Mapped[str | None]
    abstract: Mapped[str | None]  # the main abstract's sections joined as plain text
    abstract_copyright: Mapped[str | None]
    journal_id: Mapped[int | None] = mapped_column(sa.ForeignKey("journals.id"), index=True)
    journal_facts: Mapped[str | None]  # JSON: the journal as this article's own record gives it
    volume: Mapped[str | None]
    issue: Mapped[str | None]
    pages: Mapped[str | None]
    pub_date: Mapped[str | None]  # ISO partial: "2022", "2022-03" or "2022-03-08"
    pub_year: Mapped[int | None] = mapped_column(index=True)
    pub_month: Mapped[int | None]
    pub_day: Mapped[int | None]
    pub_season: Mapped[str | None]
    pub_date_raw: Mapped[str | None]  # MedlineDate or the source's words, when it had any
    epub_date: Mapped[str | None]  # ISO partial
    medline_status: Mapped[str | None]
    publication_status: Mapped[str | None]
    date_completed: Mapped[str | None]  # ISO partial
    date_revised: Mapped[str | None]  # ISO partial
    coi_statement: Mapped[str | None]
    book_title: Mapped[str | None]
    publisher: Mapped[str | None]
    license_url: Mapped[str | None]  # the licence the article is under (see enrich.merge, field "license")
    license_type: Mapped[str | None]  # JATS @license-type, or Crossref content-version
    copyright: Mapped[str | None]
    copyright_year: Mapped[int | None]
    citation_count: Mapped[int | None]  # Crossref is-referenced-by-count
    references_count: Mapped[int | None]  # Crossref's count, else the length of PubMed's ReferenceList
    crossref_type: Mapped[str | None]  # "journal-article", "book-chapter", ...
    crossref_status: Mapped[str | None]  # "found" | "not_found"; None: Crossref was never asked
    pmc_status: Mapped[str | None]  # "found" | "not_found"; None: PMC was never asked
    icite_status: Mapped[str | None]  # migration 0009: "found" | "not_found"; None: iCite was never asked
    retracted: Mapped[bool] = mapped_column(server_default=sa.false())
    in_pubmed: Mapped[bool] = mapped_column(server_default=sa.true())
    deleted: Mapped[bool] = mapped_column(server_default=sa.false())  # a DeleteCitation named it
    content_sha256: Mapped[str | None]  # of the current PubMed raw record
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]  # moves only when something was written


class ArticleIdentifier(Base):
    """Keyed by (article_id, id_type, value): one index fewer to maintain than a position key would need."""

    __tablename__ = "article_identifiers"
    __table_args__ = (sa.Index(None, "id_type", "value"),)

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    id_type: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(primary_key=True)
    position: Mapped[int]  # the source's order, ArticleIds first, then ELocationIDs
    valid: Mapped[bool]


class Author(Base):
    __tablename__ = "authors"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    last_name: Mapped[str | None]
    fore_name: Mapped[str | None]
    initials: Mapped[str | None]
    suffix: Mapped[str | None]
    collective_name: Mapped[str | None]
    orcid: Mapped[str | None] = mapped_column(index=True)
    valid: Mapped[bool]
    equal_contrib: Mapped[bool]


class AuthorAffiliation(Base):
    __tablename__ = "author_affiliations"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["article_id", "author_position"],
            ["authors.article_id", "authors.position"],
            ondelete="CASCADE",
        ),
    )

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    author_position: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    affiliation: Mapped[str]


class AbstractSection(Base):
    """Sections of the main abstract (abstract_index 0) and of each OtherAbstract (1, 2, ...)."""

    __tablename__ = "abstract_sections"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    abstract_index: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str]  # "main", or the OtherAbstract's Type ("Publisher", "plain-language-summary")
    language: Mapped[str | None]
    label: Mapped[str | None]
    nlm_category: Mapped[str | None]
    text: Mapped[str]


class ArticleDate(Base):
    """ArticleDate (kind "Electronic") and History PubMedPubDate (kind its PubStatus) entries."""

    __tablename__ = "article_dates"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str]
    year: Mapped[int | None]
    month: Mapped[int | None]
    day: Mapped[int | None]
    iso: Mapped[str | None]
    raw: Mapped[str | None]


class ArticleLanguage(Base):
    __tablename__ = "article_languages"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    language: Mapped[str]


class PublicationType(Base):
    __tablename__ = "publication_types"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    ui: Mapped[str | None]
    name: Mapped[str]


class MeshHeading(Base):
    __tablename__ = "mesh_headings"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    descriptor_ui: Mapped[str | None] = mapped_column(index=True)
    descriptor: Mapped[str]
    major: Mapped[bool]  # the descriptor's own MajorTopicYN
    descriptor_type: Mapped[str | None]


class MeshQualifier(Base):
    __tablename__ = "mesh_qualifiers"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["article_id", "heading_position"],
            ["mesh_headings.article_id", "mesh_headings.position"],
            ondelete="CASCADE",
        ),
    )

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    heading_position: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    qualifier_ui: Mapped[str | None]
    qualifier: Mapped[str]
    major: Mapped[bool]


class Keyword(Base):
    __tablename__ = "keywords"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str | None]
    keyword: Mapped[str]
    major: Mapped[bool]


class Chemical(Base):
    __tablename__ = "chemicals"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    registry_number: Mapped[str | None]
    ui: Mapped[str | None]


class Grant(Base):
    __tablename__ = "grants"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[str | None]
    acronym: Mapped[str | None]
    agency: Mapped[str | None]
    country: Mapped[str | None]


class CommentCorrection(Base):
    __tablename__ = "comments_corrections"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    ref_type: Mapped[str]
    ref_source: Mapped[str | None]
    ref_pmid: Mapped[str | None] = mapped_column(index=True)  # finds "what retracts or corrects X"
    note: Mapped[str | None]


class ArticleReference(Base):
    __tablename__ = "article_references"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    citation: Mapped[str | None]
    pmid: Mapped[str | None]
    doi: Mapped[str | None]
    pmcid: Mapped[str | None]


class RawPayload(Base):
    """Every distinct raw record ever fetched, compressed, so any record can be re-parsed offline."""

    __tablename__ = "raw_payloads"
    __table_args__ = (
        sa.UniqueConstraint("source", "sha256"),
        sa.Index(None, "source", "source_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str]  # "pubmed"
    source_id: Mapped[str]  # the id within the source (the PMID)
    sha256: Mapped[str]  # hex digest of the uncompressed bytes
    url: Mapped[str | None]  # as the caller gave it, secrets already redacted
    fetched_at: Mapped[datetime]
    content_encoding: Mapped[str]  # "gzip"
    content: Mapped[bytes]
    size: Mapped[int]  # uncompressed bytes


class SourceRecord(Base):
    """The current raw record of each source for an article; the merge reads the sources from here.

    One record may be the current one of several articles (migration 0006): a Crossref work or PMC
    record whose DOI / PMCID several PubMed articles share enriches each of them.
    """

    __tablename__ = "source_records"
    __table_args__ = (sa.UniqueConstraint("source", "source_id", "article_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(_article_fk(), index=True)
    source: Mapped[str]
    source_id: Mapped[str]
    payload_id: Mapped[int] = mapped_column(sa.ForeignKey("raw_payloads.id"), index=True)
    fetched_at: Mapped[datetime]


# Enrichment (migration 0002): runs, provenance, disagreements, history, conflicts, and the child tables
# of what PMC and Crossref add. See db.reconcile for who writes what.


class HarvestRun(Base):
    """One command run; history and conflict rows name the run that wrote them."""

    __tablename__ = "harvest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    command: Mapped[str]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str]  # "running", "ok", "partial", "failed"; "abandoned" (db.runs)
    summary: Mapped[str | None]  # JSON
    # Migration 0004: who ran it, and whether it ran under the run lock (db.runs.exclusive_run): a locked
    # run left "running" when the lock is free again was killed, and the next locked run marks it abandoned.
    pid: Mapped[int | None]
    host: Mapped[str | None]
    locked: Mapped[bool] = mapped_column(server_default=sa.false())


# Nightly state (migration 0004): search watermarks, per-search run detail, the run lock's holder.


class SearchState(Base):
    """One configured search: ``watermark`` is the end (inclusive) of its last verified window.

    A search whose query or datetype changed starts again from its first-run window (db.runs).
    """

    __tablename__ = "search_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    query: Mapped[str]
    datetype: Mapped[str]
    watermark: Mapped[date | None] = mapped_column(sa.Date())
    last_verified_run_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("harvest_runs.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime]


class RunSearch(Base):
    """What one run did for one search: its window, counts, and whether the window was verified.

    ``failed_ids`` and ``errors`` are JSON lists; ``watermark_after`` equals ``watermark_before`` unless
    the window was verified.
    """

    __tablename__ = "run_searches"

    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("harvest_runs.id", ondelete="CASCADE"), primary_key=True
    )
    search: Mapped[str] = mapped_column(primary_key=True)
    query: Mapped[str]
    datetype: Mapped[str]
    window_start: Mapped[date] = mapped_column(sa.Date())
    window_end: Mapped[date] = mapped_column(sa.Date())
    expected: Mapped[int]
    fetched: Mapped[int]
    created: Mapped[int]
    updated: Mapped[int]
    unchanged: Mapped[int]
    verified: Mapped[bool]
    watermark_before: Mapped[date | None] = mapped_column(sa.Date())
    watermark_after: Mapped[date | None] = mapped_column(sa.Date())
    failed_ids: Mapped[str]  # JSON list
    errors: Mapped[str]  # JSON list
    finished_at: Mapped[datetime]


class RunLock(Base):
    """Who holds the run lock (one row, name "harvest"); informational: the lock itself is a PostgreSQL
    advisory lock or an OS lock on a file beside the SQLite database, so a stale row never blocks."""

    __tablename__ = "run_locks"

    name: Mapped[str] = mapped_column(primary_key=True)
    purpose: Mapped[str]
    pid: Mapped[int]
    host: Mapped[str]
    acquired_at: Mapped[datetime]


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("harvest_runs.id", ondelete="SET NULL")


class FieldProvenance(Base):
    """Where a stored value came from, for values that did not come from the article's PubMed record.

    A field with a value and no row here came from the current PubMed record (source "pubmed", source_id
    the PMID, fetched_at that of the pubmed source record): the PubMed store, on its fast path, writes none.
    """

    __tablename__ = "field_provenance"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    field: Mapped[str] = mapped_column(primary_key=True)
    source: Mapped[str]
    source_id: Mapped[str]
    fetched_at: Mapped[datetime]


class FieldDisagreement(Base):
    """Two sources that state different values of a shared field (source < other_source by name)."""

    __tablename__ = "field_disagreements"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    field: Mapped[str] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[str | None]
    other_source: Mapped[str] = mapped_column(primary_key=True)
    other_value: Mapped[str | None]
    detected_at: Mapped[datetime]


class ArticleHistory(Base):
    """One changed field of a stored article: old and new values as JSON text (NULL for none)."""

    __tablename__ = "article_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(_article_fk(), index=True)
    field: Mapped[str]
    old_value: Mapped[str | None]
    new_value: Mapped[str | None]
    source: Mapped[str]
    run_id: Mapped[int | None] = mapped_column(_run_fk(), index=True)  # migration 0003: a run's changes
    changed_at: Mapped[datetime]


class Conflict(Base):
    """An incoming record whose identifiers name two or more stored articles that it would merge into one.

    ``claims`` is JSON: [{"id_type", "value", "article_id"}]; ``article_ids`` the sorted ids joined with ",".
    ``status``: "open"; "resolved" (by hand with a kept article, or the record later matched one article:
    ``resolution`` says which); "ignored" (by hand: the record stays unmerged and is not reported again).
    """

    __tablename__ = "conflicts"
    __table_args__ = (sa.UniqueConstraint("source", "source_id", "article_ids"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str]
    source_id: Mapped[str]
    claims: Mapped[str]
    article_ids: Mapped[str]
    status: Mapped[str] = mapped_column(server_default="open")  # "open" | "resolved" | "ignored"
    detected_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(_run_fk())
    resolution: Mapped[str | None]  # "kept", "ignored", "matched" (one article later), "shared" (0006)
    kept_article_id: Mapped[int | None] = mapped_column(sa.ForeignKey("articles.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None]


class ArticleSubject(Base):
    __tablename__ = "article_subjects"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str]


class ArticleLicense(Base):
    __tablename__ = "article_licenses"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str | None]
    license_type: Mapped[str | None]
    text: Mapped[str | None]
    start_date: Mapped[str | None]  # ISO partial


class ArticleFunder(Base):
    __tablename__ = "article_funders"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None]
    funder_doi: Mapped[str | None]  # Open Funder Registry DOI, lower-case


class FunderAward(Base):
    __tablename__ = "funder_awards"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["article_id", "funder_position"],
            ["article_funders.article_id", "article_funders.position"],
            ondelete="CASCADE",
        ),
    )

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    funder_position: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    award_id: Mapped[str]


class ArticleUpdate(Base):
    """Crossref update relations: ``direction`` "updated-by" or "update-to", ``kind`` "retraction", ..."""

    __tablename__ = "article_updates"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str]
    direction: Mapped[str]
    doi: Mapped[str | None]
    asserted_by: Mapped[str | None]  # "publisher", "retraction-watch"
    update_date: Mapped[str | None]  # ISO partial
    label: Mapped[str | None]


class RetractionSource(Base):
    """Each statement that the article is retracted, by source; ``articles.retracted`` is true iff any.

    Keyed by (article_id, source, position): the PubMed store replaces its own rows without renumbering
    those of other sources.
    """

    __tablename__ = "retraction_sources"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    source: Mapped[str] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    statement: Mapped[str]
    notice: Mapped[str | None]  # the retraction notice: a DOI, a PMID or a citation


class ArticleClinicalTrial(Base):
    __tablename__ = "article_clinical_trials"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str]


class BulkFile(Base):
    """A PubMed baseline or update file applied by ``harvest ingest`` (migration 0005; see db.bulk).

    The checksum is unique: the same bytes are applied once, whatever the file is called. The same NLM
    name with another checksum (a re-issued file) gets a row of its own, only with ``forced``.
    """

    __tablename__ = "bulk_files"
    __table_args__ = (sa.Index(None, "release_year", "sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]  # the file's base name, e.g. "pubmed25n1275.xml.gz"
    kind: Mapped[str]  # "baseline" | "update"
    release_year: Mapped[int | None]  # 2025 for pubmed25n...; None when the name is not NLM's pattern
    sequence: Mapped[int | None]  # 1275 for pubmed25n1275
    sha256: Mapped[str] = mapped_column(unique=True)  # of the file's bytes as given (compressed or not)
    size: Mapped[int] = mapped_column(sa.BigInteger())  # bytes, as given
    records: Mapped[int]  # PubmedArticle and PubmedBookArticle records in the file
    deleted: Mapped[int]  # PMIDs listed in its DeleteCitation elements
    applied_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("harvest_runs.id", ondelete="SET NULL"))
    forced: Mapped[bool] = mapped_column(server_default=sa.false())  # applied out of order with --force


class IngestQueueFile(Base):
    """A bulk file in the work queue of ``harvest ingest --workers N`` and ``harvest worker`` on PostgreSQL
    (migration 0013; see db.queue). One row per path: enqueuing a path again puts its row back to waiting.

    ``status``: "waiting"; "claimed" (a worker applies it: ``worker``, ``host``, ``pid``, ``claimed_at``;
    ``lease_until`` is renewed while it lives, and ``worker_key`` names the advisory lock its connection
    holds); then "applied", "skipped" (the same bytes were applied before), "refused" (out of order) or
    "failed" (unreadable, truncated, not PubMed XML), with ``message`` and ``result`` (the file's report,
    JSON). ``bytes_done`` and ``records_done`` are the claimed file's progress. SQLite databases get the
    table too (one schema for both), and never use it.
    """

    __tablename__ = "ingest_queue"
    __table_args__ = (sa.Index(None, "status", "release_year", "sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(unique=True)  # absolute, as every worker host must see it
    name: Mapped[str]  # base name, e.g. "pubmed26n0001.xml.gz"
    kind: Mapped[str]  # "baseline" | "update"
    release_year: Mapped[int | None]
    sequence: Mapped[int | None]
    size: Mapped[int] = mapped_column(sa.BigInteger())  # bytes on disk when enqueued
    force: Mapped[bool] = mapped_column(server_default=sa.false())
    enrich: Mapped[bool] = mapped_column(server_default=sa.false())
    status: Mapped[str] = mapped_column(server_default="waiting")
    message: Mapped[str | None]
    enqueued_at: Mapped[datetime]
    enqueued_run_id: Mapped[int | None] = mapped_column(_run_fk())
    run_id: Mapped[int | None] = mapped_column(_run_fk())  # the run of the worker that claimed it last
    worker: Mapped[str | None]  # "host:pid"
    host: Mapped[str | None]
    pid: Mapped[int | None]
    worker_key: Mapped[int | None]  # the worker's session advisory lock (db.queue)
    claim_token: Mapped[str | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    claimed_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    bytes_done: Mapped[int] = mapped_column(sa.BigInteger(), server_default="0")
    records_done: Mapped[int] = mapped_column(server_default="0")
    result: Mapped[str | None]  # JSON: the file's report once it is applied, skipped, refused or failed


class RejectedRecordRow(Base):
    """A PubMed record that could not be parsed or stored, kept raw with the reason (migration 0007; see
    db.bulk). The rest of its file or efetch answer was stored; parsing ``raw_xml`` again recovers it."""

    __tablename__ = "rejected_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str]  # where it came from: "file:pubmed25n1275.xml.gz", or the efetch URL (redacted)
    file_name: Mapped[str | None]  # the bulk file's base name, e.g. "pubmed25n1275.xml.gz"
    file_sha256: Mapped[str | None]  # bulk_files.sha256 of the file it came in
    pmid: Mapped[str | None] = mapped_column(index=True)  # when the record names a usable one
    reason: Mapped[str]  # the parse or store error, one line
    raw_xml: Mapped[bytes] = mapped_column(sa.LargeBinary())  # the record's own XML, as in the file
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("harvest_runs.id", ondelete="SET NULL"))
    rejected_at: Mapped[datetime]


# Look-ups that back off (migration 0010; see db.lookups).


class LookupBackoff(Base):
    """A source that answered "not found" for an article: when, how often, and for which id.

    One row per (article, source) while the source keeps not knowing the article; the enrichment step
    writes it (``harvester.jobs.enrichment``), never the article's own row, so an unchanged article stays
    unwritten. ``misses`` counts the days with a "not found" answer since the source last knew it (two
    answers on one day are one miss, and the second writes nothing); the source is asked again by the runs
    that honour the back-off (``harvest enrich`` without ids, ``harvest nightly``) on ``last_missed`` + 1,
    2, 4, ... days (``[enrich] not_found_max_days`` at most). A "found" answer deletes the row. The row
    holds only while the article's id for that source is still ``asked_id``: a new DOI is asked at once.
    """

    __tablename__ = "lookup_backoff"

    article_id: Mapped[int] = mapped_column(_article_fk(), primary_key=True)
    source: Mapped[str] = mapped_column(primary_key=True)  # "pmc", "crossref" or "icite"
    asked_id: Mapped[str]  # the PMCID, DOI or PMID the source did not know
    first_missed: Mapped[date] = mapped_column(sa.Date())  # (UTC) day of the first "not found" in a row
    last_missed: Mapped[date] = mapped_column(sa.Date())  # day of the latest
    misses: Mapped[int]  # days with a "not found" answer since the source last knew the article


# Citation impact (migration 0009; see db.icite): metrics per article and source over time, and the
# citation graph between PMIDs.


class ArticleMetrics(Base):
    """Citation metrics of an article from one source ("icite"), valid for ``valid_on``.

    A row is added only when a value changed since the article's latest row of that source, so the rows
    of an article are its metrics' history (an RCR month by month). ``valid_on`` is the date of the
    source's ``last_modified`` when it gave one, else the day they were fetched; the latest row is the
    one with the greatest (valid_on, id).
    """

    __tablename__ = "article_metrics"
    __table_args__ = (sa.Index(None, "article_id", "source", "valid_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(_article_fk())
    source: Mapped[str]
    valid_on: Mapped[date] = mapped_column(sa.Date())
    fetched_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(_run_fk())
    citation_count: Mapped[int | None]
    relative_citation_ratio: Mapped[float | None] = mapped_column(sa.Float())
    nih_percentile: Mapped[float | None] = mapped_column(sa.Float())
    field_citation_rate: Mapped[float | None] = mapped_column(sa.Float())
    expected_citations_per_year: Mapped[float | None] = mapped_column(sa.Float())
    citations_per_year: Mapped[float | None] = mapped_column(sa.Float())
    apt: Mapped[float | None] = mapped_column(sa.Float())
    is_research_article: Mapped[bool | None]
    is_clinical: Mapped[bool | None]
    provisional: Mapped[bool | None]
    human: Mapped[float | None] = mapped_column(sa.Float())
    animal: Mapped[float | None] = mapped_column(sa.Float())
    molecular_cellular: Mapped[float | None] = mapped_column(sa.Float())
    x_coord: Mapped[float | None] = mapped_column(sa.Float())
    y_coord: Mapped[float | None] = mapped_column(sa.Float())
    cited_by_clinical_count: Mapped[int | None]
    references_count: Mapped[int | None]
    last_modified: Mapped[str | None]  # the source's own date-time, ISO


class CitationEdge(Base):
    """``citing_pmid`` cites ``cited_pmid``, as ``source`` says ("icite": the NIH Open Citation Collection).

    Kept when either end is a stored article (or, on request, always); no foreign key, since the other
    end is often not stored.
    """

    __tablename__ = "citation_edges"
    __table_args__ = (sa.Index(None, "cited_pmid"),)

    citing_pmid: Mapped[str] = mapped_column(primary_key=True)
    cited_pmid: Mapped[str] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(primary_key=True)


class RequestBudget(Base):
    """The latest sends to one service with one key, shared by every harvest process on every host that
    uses this database (PostgreSQL; db/budget.py): one row per service and key hash, taken under a row lock
    for a moment to reserve a send slot.

    The key is never stored: ``key_hash`` is a salted, stretched hash (PBKDF2-HMAC-SHA256, the salt in
    ``request_budget_salt``) of the service's address and its key (or "no key").
    """

    __tablename__ = "request_budgets"

    service: Mapped[str] = mapped_column(primary_key=True)  # "ncbi", "crossref", "icite"
    key_hash: Mapped[str] = mapped_column(primary_key=True)  # hex
    sends: Mapped[str]  # the latest reserved send times, seconds on the database server's clock, one a line
    updated_at: Mapped[datetime]


class RequestBudgetSalt(Base):
    """The database's own random salt for ``request_budgets.key_hash`` (one row, id 1)."""

    __tablename__ = "request_budget_salt"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    salt: Mapped[str]  # hex


metadata = Base.metadata
