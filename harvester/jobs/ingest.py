"""The bulk-file pipeline: PubMed baseline and update files -> parse -> store -> reconcile -> record.

``harvest ingest FILE...`` applies files NLM publishes (https://ftp.ncbi.nlm.nih.gov/pubmed/baseline/ and
.../updatefiles/, named ``pubmed25n1275.xml.gz``), plain or gzipped, from local paths.

What happens to each file, in this order:

1. Checksum. The file's bytes, as given, are hashed (SHA-256); a gzip file is also decompressed to its end
   in this pass, so a truncated download is refused before a single record of it is stored.
2. Already applied? A file whose checksum is recorded in bulk_files is skipped: nothing is written.
3. Order. NLM numbers its files in one sequence per yearly release (baseline pubmed25n0001 to n1274, then
   the daily updates from n1275 on). A file whose name carries that number must come after the latest
   update file applied: one that comes before it, one from an older release, a gap after the latest
   update of the same release (a missed file: its deletions would be lost), and a re-issued file (the same
   name applied with other contents) are refused with the reason. ``--force`` applies them anyway and the
   record says so. Baseline files (``--baseline``, or in a directory named ``baseline`` as on NLM's server)
   are not checked for gaps and may come in any order among themselves. A file whose name does not carry
   NLM's number (an excerpt, a local extract) cannot be placed in the sequence and is applied unchecked.
4. Store. The file is streamed through :func:`harvester.sources.pubmed_xml.scan_pubmed` by a reader of
   :mod:`harvester.jobs.bulk_reader` (a process of its own for files of READ_IN_PROCESS_BYTES or more into
   SQLite, or of READ_IN_PROCESS_XML_BYTES of XML into PostgreSQL, else a thread); records already stored
   byte for byte are counted unchanged without being
   parsed (except a deleted article's, in a file placed in NLM's sequence and not forced: that revives
   it), the others are parsed and stored in batches
   (:func:`db.store.store_articles`: idempotent, history on change, a lower PMID version never replaces
   a higher one), so memory does not grow with the file. Articles that also have PMC or Crossref
   records are merged again when their PubMed record changed (:func:`db.reconcile.reconcile_articles`).
5. Record. Once every record is stored, the file's DeleteCitation PMIDs are flagged deleted and the file is
   recorded as applied, in one transaction (:mod:`db.bulk`).

A record that cannot be parsed (a PMID Version out of range) or stored (a value the database refuses: the
batch is then stored again record by record, so only the normal path's one transaction a batch is paid
when nothing is wrong) does not stop its file: it is kept raw in ``rejected_records`` with the reason, in
the transaction that records the file, the rest is applied, and the run exits 8 (ExitCode.REJECTED).

A file that breaks part-way (truncated, not well-formed, not PubMed XML, changed while being read) is not
recorded; the whole batches stored before the break stay (storing them again is harmless) and running the
file again, once fixed, applies it. Files named together are applied in NLM's order (release, then
number), whatever order they were given in; files without a number come last, in the order given.

Several files at once (``--workers N``: the PostgreSQL work queue, or N reading processes on SQLite) are
:mod:`harvester.jobs.workers`' business; each file is still applied by :class:`FileApplier`, step by step.

Enrichment is deferred by default: a bulk file holds up to 30,000 records, and asking PMC and Crossref for
each takes hours at their polite rates. ``harvest enrich`` picks up every article never enriched;
``enrich=True`` (``--enrich``) enriches each batch's new and changed articles as it is stored.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy.engine import Connection, Engine

from db.bulk import (
    AppliedFile,
    NewFile,
    applied_by_checksum,
    applied_by_sequence,
    latest_applied,
    record_applied,
    refresh_statistics,
)
from db.conflicts import describe_found
from db.reconcile import reconcile_articles
from db.store import StoreResult, store_articles_isolated
from db.targets import article_ids_by_pmid, enrichment_targets
from harvester.core.errors import BulkFileError, ExitCode, FileOrderError, ParseError
from harvester.core.gcpolicy import fewer_collections
from harvester.core.records import RejectedRecord
from harvester.core.settings import Settings
from harvester.jobs.bulk_reader import (
    Batch,
    ProcessReader,
    Reader,
    ThreadReader,
    can_read_in_process,
    usable_cores,
)
from harvester.jobs.enrichment import EnrichReport, SourceCounts, enrich_articles
from harvester.jobs.services import Services

log = logging.getLogger(__name__)

LISTED_CONFLICTS = 20  # conflicts described in a file's report; all are counted, and recorded in the database
REASONS_KEPT = 10  # rejected records a file's report names with their reason (all kept in rejected_records)
INGEST_BATCH = 500  # records per store_articles transaction: bounded memory, few round trips
# Files this large (on disk) are read and parsed by a process of their own (harvester.jobs.bulk_reader), on
# these databases, so that the parse does not take turns with the storing side for one GIL. A reading
# process costs about a CPU second to start and the sending of every record, which the parallel parse pays
# back on SQLite for any file but the smallest. On PostgreSQL its server already works beside this process,
# and the reading process pays only for large files (READ_IN_PROCESS_XML_BYTES of XML, gzip or not;
# bench/bench_store.py, first loads, medians of 3: 30,000 records (311 MB) 20.8 s against 23.3 s with a
# thread, 10,000 records (104 MB) 9.85 against 9.82 s; 8 files of 3,000 (31 MB each) 28.4 and 28.9 s against
# 22.5 and 23.3 s, 2 runs each).
READ_IN_PROCESS_BYTES = 4 << 20
# The databases a reading process serves, and from how many bytes of XML (a dialect not named: never).
READ_IN_PROCESS_XML_BYTES: dict[str, int] = {"sqlite": 0, "postgresql": 128 << 20}
READ_CHUNK = 1 << 20
# NLM's names: pubmed25n1275.xml.gz (medline17n0001.xml.gz before 2018), also inside a longer local name.
_NLM_NAME = re.compile(r"(?<![A-Za-z0-9])(?:pubmed|medline)(\d{2})n(\d{4})(?!\d)")
_GZIP_MAGIC = b"\x1f\x8b"
BULK_SUFFIXES = (".xml", ".xml.gz")  # what a directory given to harvest ingest is searched for

FileOutcome = Literal["applied", "skipped", "refused", "failed"]


@dataclass(frozen=True, slots=True)
class BulkFileName:
    """What a file's path says about it: its kind and its place in NLM's sequence, when it has one."""

    path: Path
    name: str
    kind: str  # "baseline" | "update"
    release_year: int | None
    sequence: int | None

    @property
    def key(self) -> tuple[int, int] | None:
        if self.release_year is None or self.sequence is None:
            return None
        return (self.release_year, self.sequence)


def parse_file_name(path: str | os.PathLike[str], *, baseline: bool = False) -> BulkFileName:
    """Kind and NLM sequence of a file from its path: ``.../baseline/pubmed25n0001.xml.gz`` is baseline
    file 1 of the 2025 release; any other directory means an update file unless ``baseline``."""
    p = Path(path)
    match = _NLM_NAME.search(p.name)
    kind = "baseline" if baseline or p.parent.name.lower() == "baseline" else "update"
    if match is None:
        return BulkFileName(p, p.name, kind, None, None)
    return BulkFileName(p, p.name, kind, 2000 + int(match.group(1)), int(match.group(2)))


def nlm_name(release_year: int, sequence: int) -> str:
    """The stem NLM gives the file at this place: (2025, 1275) -> "pubmed25n1275"."""
    prefix = "medline" if release_year < 2018 else "pubmed"
    return f"{prefix}{release_year % 100:02d}n{sequence:04d}"


@dataclass(slots=True)
class FileReport:
    """What happened to one file."""

    path: str
    name: str
    kind: str
    release_year: int | None
    sequence: int | None
    outcome: FileOutcome = "failed"
    message: str | None = None  # why it was skipped, refused or failed; or the warning it was forced past
    sha256: str | None = None
    size: int | None = None
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted_listed: int = 0  # PMIDs its DeleteCitation elements list
    deleted_marked: int = 0  # of them, stored articles newly flagged deleted
    forced: bool = False
    conflict_count: int = 0  # records naming two stored articles they would merge (see harvest conflicts)
    conflicts: list[str] = field(default_factory=list)  # the first LISTED_CONFLICTS of them, described
    rejected_count: int = 0  # records that could not be parsed or stored: kept raw in rejected_records
    rejected_pmids: list[str] = field(default_factory=list)  # their PMIDs, where known
    rejected_reasons: list[str] = field(default_factory=list)  # "PMID n: why", the first REASONS_KEPT
    enrichment: EnrichReport | None = None

    def add_conflicts(self, described: Sequence[str]) -> None:
        """Count conflicts, keeping the first few described: memory must not grow with the file."""
        self.conflict_count += len(described)
        self.conflicts.extend(described[: max(0, LISTED_CONFLICTS - len(self.conflicts))])

    def summary_line(self) -> str:
        place = f" {self.kind}" + (
            f" {self.release_year}/{self.sequence}" if self.sequence is not None else ""
        )
        if self.outcome == "applied":
            forced = " (forced)" if self.forced else ""
            return (
                f"applied  {self.name}{place}{forced}: {self.records} records (created {self.created}, "
                f"updated {self.updated}, unchanged {self.unchanged}), {self.deleted_listed} deleted "
                f"({self.deleted_marked} stored articles flagged)"
                + (f", {self.conflict_count} conflicts" if self.conflict_count else "")
                + (
                    f", {self.rejected_count} rejected (kept raw in rejected_records"
                    + (f"; PMIDs {', '.join(self.rejected_pmids)})" if self.rejected_pmids else ")")
                    if self.rejected_count
                    else ""
                )
            )
        return f"{self.outcome:<8} {self.name}{place}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "name": self.name,
            "kind": self.kind,
            "release_year": self.release_year,
            "sequence": self.sequence,
            "outcome": self.outcome,
            "message": self.message,
            "sha256": self.sha256,
            "size": self.size,
            "records": self.records,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted_listed": self.deleted_listed,
            "deleted_marked": self.deleted_marked,
            "forced": self.forced,
            "conflict_count": self.conflict_count,
            "conflicts": self.conflicts,
            "rejected_count": self.rejected_count,
            "rejected_pmids": self.rejected_pmids,
            "rejected_reasons": self.rejected_reasons,
            "enrichment": self.enrichment.as_dict() if self.enrichment else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileReport:
        """The report :meth:`as_dict` gave (a worker of the queue stores it; the run that queued the file
        reads it back): the same lines, counts and exit code."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "enrichment"}
        report = cls(**fields)
        report.rejected_reasons = list(data.get("rejected_reasons") or [])
        enrichment = data.get("enrichment")
        if isinstance(enrichment, Mapping):
            report.enrichment = EnrichReport(
                pmc=SourceCounts(**enrichment.get("pmc", {})),
                crossref=SourceCounts(**enrichment.get("crossref", {})),
                icite=SourceCounts(**enrichment.get("icite", {})),
                created_from_crossref=list(enrichment.get("created_from_crossref", [])),
                conflicts=list(enrichment.get("conflicts", [])),
                errors=list(enrichment.get("errors", [])),
            )
        return report


@dataclass(slots=True)
class IngestReport:
    """What an ingest did, file by file, in the order the files were taken."""

    files: list[FileReport] = field(default_factory=list)
    enriched: bool = False

    def count(self, outcome: FileOutcome) -> int:
        return sum(1 for f in self.files if f.outcome == outcome)

    @property
    def exit_code(self) -> ExitCode:
        """2 when a file was refused or failed; else 4 when enrichment failed; else 6 on a conflict; else 8
        when a file was applied with rejected records (kept raw, see rejected_records); else 0.

        A conflict is what it is for ``harvest pmid`` and the other commands (issue 13): a record whose
        identifiers name two stored articles it would merge into one. A DOI or PMCID that two PubMed
        records share (the versions of a Cochrane review) is not one, so real files exit 0.
        """
        if self.count("refused") or self.count("failed"):
            return BulkFileError.exit_code
        enrichments = [f.enrichment for f in self.files if f.enrichment is not None]
        if any(e.pmc.failed or e.crossref.failed for e in enrichments):
            return ExitCode.UPSTREAM
        if any(f.conflict_count or (f.enrichment is not None and f.enrichment.conflicts) for f in self.files):
            return ExitCode.CONFLICT
        if any(f.rejected_count for f in self.files if f.outcome == "applied"):
            return ExitCode.REJECTED
        return ExitCode.OK

    def summary_line(self) -> str:
        applied = [f for f in self.files if f.outcome == "applied"]
        return (
            f"files {len(self.files)}: applied {len(applied)}, skipped (already applied) "
            f"{self.count('skipped')}, refused {self.count('refused')}, failed {self.count('failed')}; "
            f"records {sum(f.records for f in applied)}, created {sum(f.created for f in applied)}, "
            f"updated {sum(f.updated for f in applied)}, deleted {sum(f.deleted_marked for f in applied)}"
            + (f", conflicts {conflicts}" if (conflicts := sum(f.conflict_count for f in self.files)) else "")
            + (f", rejected {rejected}" if (rejected := sum(f.rejected_count for f in applied)) else "")
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "files": [f.as_dict() for f in self.files],
            "applied": self.count("applied"),
            "skipped": self.count("skipped"),
            "refused": self.count("refused"),
            "failed": self.count("failed"),
            "rejected": sum(f.rejected_count for f in self.files if f.outcome == "applied"),
            "enriched": self.enriched,
            "exit_code": int(self.exit_code),
        }


def check_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to ingest, after checking each is a readable local file; a directory stands for the
    ``.xml`` and ``.xml.gz`` files directly in it (NLM's folders also hold ``.md5`` files and a README),
    sorted by name.

    Raises:
        BulkFileError: a path is missing, unreadable or a URL, or a directory holds no such file (nothing
            has been done).
    """
    if not paths:
        raise BulkFileError("no files given: name PubMed baseline or update files (.xml or .xml.gz)", path="")
    problems: list[BulkFileError] = []
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        text = str(given)
        if "://" in text:
            problems.append(BulkFileError(f"{text} is a URL: download the file first", path=text))
        elif not path.exists():
            problems.append(BulkFileError(f"file not found: {text}", path=text))
        elif path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.name.endswith(BULK_SUFFIXES) and p.is_file())
            if not inside:
                problems.append(
                    BulkFileError(f"{text} is a directory without .xml or .xml.gz files", path=text)
                )
            for member in inside:
                problem = _unreadable(member)
                if problem is not None:
                    problems.append(problem)
                found.append(member)
        else:
            problem = _unreadable(path)
            if problem is not None:
                problems.append(problem)
            found.append(path)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BulkFileError(f"{first.message}{more}; nothing was ingested", path=first.path)
    return found


def _unreadable(path: Path) -> BulkFileError | None:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return BulkFileError(f"cannot read {path}: {reason}", path=str(path))
    return None


def sequence_order(names: Sequence[BulkFileName]) -> list[BulkFileName]:
    """NLM's order: by release, then number; files without a number last, in the order given."""
    numbered = sorted((n for n in names if n.key is not None), key=lambda n: n.key or (0, 0))
    return numbered + [n for n in names if n.key is None]


@fewer_collections()  # records by the million, none in a cycle: see harvester.core.gcpolicy
def ingest_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    settings: Settings,
    services: Services | None,
    engine: Engine,
    force: bool = False,
    enrich: bool = False,
    baseline: bool = False,
    run_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = INGEST_BATCH,
    read_in_process: bool | None = None,
) -> IngestReport:
    """Apply PubMed baseline and update files to the database, each once, in NLM's order.

    Args:
        paths: local .xml or .xml.gz files.
        settings: the run's settings (the merge policy).
        services: the remote clients, needed only with ``enrich``.
        engine: the migrated database.
        force: apply files that are out of order (refused otherwise); already applied bytes stay skipped.
        enrich: fetch PMC and Crossref for each batch's new and changed articles now (default: later, by
            ``harvest enrich``).
        baseline: the files are annual baseline files (else: those in a directory named "baseline").
        run_id: the harvest_runs row history rows and the applied-files record name.
        progress: called with the bytes of the file read since the last call.
        batch_size: records per store transaction.
        read_in_process: read and parse each file in a process of its own (True), in a thread of this
            one (False), or by size (None: files of READ_IN_PROCESS_BYTES or more on disk, into SQLite,
            or also of READ_IN_PROCESS_XML_BYTES of XML or more, into PostgreSQL; when this process may
            use two cores or more). A database in memory is always read in a
            thread: another process cannot see it.

    Returns:
        The report; its ``exit_code`` says how the run went (a refused or failed file makes it 2).

    Raises:
        BulkFileError: a path is missing, a directory or unreadable (checked before anything is done).
        StorageError: the database could not be read or written (files recorded before stay recorded;
            the file being applied is not recorded).
        ValueError: ``enrich`` without ``services``, or a batch size below 1.
    """
    if enrich and services is None:
        raise ValueError("enrich needs the remote services")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    names = sequence_order([parse_file_name(p, baseline=baseline) for p in check_paths(paths)])
    report = IngestReport(enriched=enrich)
    policy = settings.merge_policy
    for name in names:
        file_report = FileReport(str(name.path), name.name, name.kind, name.release_year, name.sequence)
        report.files.append(file_report)
        applier = FileApplier(
            name,
            file_report,
            engine=engine,
            services=services if enrich else None,
            policy=policy,
            run_id=run_id,
            progress=progress,
            batch_size=batch_size,
            read_in_process=read_in_process,
        )
        try:
            applier.apply(force=force)
        except FileOrderError as exc:
            file_report.outcome = "refused"
            file_report.message = exc.message
        except BulkFileError as exc:
            file_report.outcome = "failed"
            file_report.message = exc.message
        if file_report.outcome in {"refused", "failed"}:
            log.info("%s: %s", name.name, file_report.message)  # the CLI prints it, once
    return report


class FileApplier:
    """Applies one file (steps 1 to 5 of the module docstring), filling in its FileReport.

    :meth:`apply` does it all; the steps are also callable one by one (:meth:`open`, :meth:`check`,
    :meth:`reader`, :meth:`store_batch`, :meth:`read_to_end`, :meth:`record`, :meth:`close`) for
    :mod:`harvester.jobs.workers`, which stores the batches of several files from one writer.
    """

    def __init__(
        self,
        name: BulkFileName,
        report: FileReport,
        *,
        engine: Engine,
        services: Services | None,
        policy: Mapping[str, tuple[str, ...]],
        run_id: int | None,
        progress: Callable[[int], None] | None,
        batch_size: int,
        read_in_process: bool | None,
        after_batch: Callable[[FileReport, int], None] | None = None,
    ) -> None:
        self.name = name
        self.report = report
        self.engine = engine
        self.services = services
        self.policy = policy
        self.run_id = run_id
        self.progress = progress
        self.batch_size = batch_size
        self.read_in_process = read_in_process
        self.xml_size = 0  # bytes of XML in the file (decompressed), known after the checksum pass
        self.after_batch = after_batch  # called with the report and the file position after each batch
        self.rejected: list[RejectedRecord] = []  # recorded with the file, once all of it is stored
        self._handle: BinaryIO | None = None
        self._read = 0  # bytes of the file reported to ``progress`` so far
        self._fetched_at = datetime.now(UTC)
        self._revive = False

    def apply(self, *, force: bool, also: Callable[[Connection], None] | None = None) -> None:
        """Steps 1 to 5 for this file; the report says how it went. ``also`` writes in the transaction
        that records the file (a worker marks its queue row applied there).

        Raises:
            FileOrderError: the file is out of order and not forced (nothing of it was stored).
            BulkFileError: it is unreadable, truncated or not PubMed XML (not recorded as applied).
            StorageError: the database could not be read or written.
        """
        self.open()
        try:
            if not self.check(force=force):
                return
            reader = self.reader()
            with self.reading():
                for batch, position in reader.batches():
                    self.store_batch(batch, position)
                    reader.stored(batch)
            deleted = reader.deleted
            self.read_to_end()
        finally:
            self.close()
        self.record(deleted, also=also)
        if self.report.outcome == "applied":
            refresh_statistics(self.engine, self.report.created)

    def open(self) -> None:
        path = str(self.name.path)
        try:
            self._handle = self.name.path.open("rb")
        except OSError as exc:
            raise BulkFileError(
                f"cannot read {path}: {exc.strerror or type(exc).__name__}", path=path
            ) from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def handle(self) -> BinaryIO:
        if self._handle is None:
            raise RuntimeError("the file is not open")
        return self._handle

    def check(self, *, force: bool) -> bool:
        """Steps 1 to 3: checksum, already applied (then the report says skipped: False), order.

        Raises:
            FileOrderError: out of order, not forced.
            BulkFileError: a truncated gzip file, or unreadable.
        """
        name, report = self.name, self.report
        path = str(name.path)
        report.sha256, report.size, self.xml_size = _checksum(self.handle, path)
        done = applied_by_checksum(self.engine, report.sha256)
        if done is not None:
            report.outcome = "skipped"
            report.message = f"already applied{_as(done, name.name)} on {_when(done)}"
            return False
        problem = _order_problem(self.engine, name)
        if problem is not None:
            if not force:
                raise FileOrderError(f"{problem}; --force applies it anyway", path=path)
            log.warning("%s: %s; applied anyway (--force)", name.name, problem)
            report.forced = True
            report.message = problem
        return True

    def reader(self) -> Reader:
        """Step 4's reader of the file, from its start: a thread, or for a large file a process."""
        self.handle.seek(0)
        self._fetched_at = datetime.now(UTC)
        self._revive = self._revives_deleted()
        if self._read_in_process():
            return ProcessReader(
                self.handle, self.name.path, self.batch_size, self.engine, revive_deleted=self._revive
            )
        return ThreadReader(self.handle, self.batch_size, self.engine, revive_deleted=self._revive)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Turns what breaks while the file is read into the BulkFileError that says so."""
        path = str(self.name.path)
        try:
            yield
        except ParseError as exc:
            stored = self.report.records
            kept = f"; the {stored} records before it, stored in whole batches, stay" if stored else ""
            raise BulkFileError(
                f"{exc}{kept}; not recorded as applied: fix or download the file again and rerun", path=path
            ) from None
        except OSError as exc:
            raise BulkFileError(
                f"cannot read {path}: {exc.strerror or type(exc).__name__}; not recorded as applied",
                path=path,
            ) from None

    def store_batch(self, batch: Batch, position: int) -> None:
        """Store one batch the reader handed over (step 4), and report the progress."""
        self._store_batch(batch, url=f"file:{self.name.name}", fetched_at=self._fetched_at)
        if self.progress is not None:
            self.progress(max(0, min(position, self.report.size or 0) - self._read))
            self._read = max(self._read, position)
        if self.after_batch is not None:
            self.after_batch(self.report, position)

    def read_to_end(self) -> None:
        """After the last batch: the file must not have changed while it was read."""
        path = str(self.name.path)
        if os.fstat(self.handle.fileno()).st_size != self.report.size:
            raise BulkFileError(
                f"{path} changed while it was being read (still downloading?); not recorded as applied",
                path=path,
            )

    def record(
        self, deleted: Sequence[tuple[str, int]], *, also: Callable[[Connection], None] | None = None
    ) -> None:
        """Step 5: the deletions and the file's record, in one transaction (with ``also``'s writes).

        Raises:
            StorageError: the database could not be written (nothing of this step was).
        """
        name, report = self.name, self.report
        assert report.sha256 is not None and report.size is not None
        new = NewFile(
            name.name, name.kind, name.release_year, name.sequence, report.sha256, report.size, report.records
        )
        applied, marked = record_applied(
            self.engine,
            new,
            deleted=deleted,
            at=datetime.now(UTC),
            run_id=self.run_id,
            forced=report.forced,
            rejected=self.rejected,
            also=also,
        )
        if applied is None:  # another worker recorded the same bytes meanwhile: nothing was written
            done = applied_by_checksum(self.engine, report.sha256)
            report.outcome = "skipped"
            when = f" on {_when(done)}" if done is not None else ""
            report.message = f"already applied{_as(done, name.name) if done else ''}{when}"
            return
        for record in self.rejected:
            log.info("%s: rejected PMID %s, kept raw: %s", name.name, record.pmid or "(none)", record.reason)
        report.deleted_listed = len({pmid for pmid, _version in deleted})
        report.deleted_marked = marked
        report.outcome = "applied"

    def _revives_deleted(self) -> bool:
        """Whether a record stored byte for byte revives its deleted article (db.store.store_articles).

        Only a file placed in NLM's sequence, unforced, is known to come after every deletion applied
        before it; a file without a number, or forced out of order, may be older than the deletion.
        """
        return self.name.sequence is not None and not self.report.forced

    def _read_in_process(self) -> bool:
        if not can_read_in_process(self.engine):
            return False
        if self.read_in_process is not None:
            return self.read_in_process
        # With one core the two processes would take turns, and sending the records costs extra.
        least_xml = READ_IN_PROCESS_XML_BYTES.get(self.engine.dialect.name)
        return (
            (self.report.size or 0) >= READ_IN_PROCESS_BYTES
            and least_xml is not None
            and self.xml_size >= least_xml
            and usable_cores() >= 2
        )

    def _store_batch(self, batch: Batch, *, url: str, fetched_at: datetime) -> None:
        report = self.report
        result, refused = (
            store_articles_isolated(
                self.engine,
                batch.articles,
                url=url,
                fetched_at=fetched_at,
                run_id=self.run_id,
                revive_deleted=self._revive,
            )
            if batch.articles
            else (StoreResult((), (), ()), [])
        )
        for record in [*batch.rejected, *refused]:
            self.rejected.append(record)
            report.rejected_count += 1
            if record.pmid is not None:
                report.rejected_pmids.append(record.pmid)
            if len(report.rejected_reasons) < REASONS_KEPT:
                named = record.pmid is not None and f"PMID {record.pmid}" in record.reason
                report.rejected_reasons.append(
                    record.reason if named else f"PMID {record.pmid or '(none)'}: {record.reason}"
                )
        report.records += batch.records
        report.created += len(result.created)
        report.updated += len(result.updated)
        report.unchanged += len(result.unchanged) + len(batch.unchanged)
        conflicts = [*result.conflicts, *batch.conflicted]
        report.add_conflicts(
            [
                f"pubmed PMID {pmid} names the DOI and PMCID of two articles not in PubMed"
                for pmid in conflicts
            ]
        )
        if result.enriched_changed:  # their PubMed record changed: merge it again with PMC and Crossref
            merged = reconcile_articles(
                self.engine, list(result.enriched_changed), run_id=self.run_id, policy=self.policy
            )
            report.add_conflicts(describe_found(self.engine, merged.conflicts))
        if self.services is None:
            return
        written = [*result.created, *result.updated]
        if not written:
            return
        ids = article_ids_by_pmid(self.engine, written)
        part = enrich_articles(
            enrichment_targets(self.engine, [ids[p] for p in written if p in ids]),
            services=self.services,
            engine=self.engine,
            run_id=self.run_id,
            policy=self.policy,
        )
        report.enrichment = _add_enrichment(report.enrichment or EnrichReport(), part)


def _checksum(handle: BinaryIO, path: str) -> tuple[str, int, int]:
    """SHA-256 and size of the bytes, and the size of the XML in them: a gzip file is decompressed to its
    end to prove it complete (and counted on the way)."""
    digest = hashlib.sha256()
    size = 0
    xml_size: int | None = None

    class Hashing:
        """Feeds every byte read to the digest, for gzip to read through."""

        def read(self, n: int = -1) -> bytes:
            nonlocal size
            data = handle.read(n)
            digest.update(data)
            size += len(data)
            return data

    reader = Hashing()
    try:
        head = handle.read(2)
        handle.seek(0)
        if head == _GZIP_MAGIC:
            xml_size = 0
            with gzip.GzipFile(fileobj=reader, mode="rb") as unzipped:  # type: ignore[call-overload]
                while chunk := unzipped.read(READ_CHUNK):
                    xml_size += len(chunk)
        while reader.read(READ_CHUNK):
            pass
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BulkFileError(
            f"{path} is not a complete gzip file ({exc or type(exc).__name__}): truncated download? "
            "Nothing of it was stored",
            path=path,
        ) from None
    except OSError as exc:
        raise BulkFileError(f"cannot read {path}: {exc.strerror or type(exc).__name__}", path=path) from None
    return digest.hexdigest(), size, size if xml_size is None else xml_size


def _order_problem(engine: Engine, name: BulkFileName) -> str | None:
    """Why this file may not be applied now (see the module docstring, step 3), or None."""
    key = name.key
    if key is None or name.release_year is None or name.sequence is None:
        log.info("%s: the name carries no NLM sequence number; applied without an order check", name.name)
        return None
    same = applied_by_sequence(engine, name.release_year, name.sequence)
    if same is not None:
        return (
            f"{nlm_name(*key)} was already applied{_as(same, name.name)} on {_when(same)} with other "
            f"contents (sha256 {same.sha256[:12]}...): NLM re-issued it, or one of the two copies is damaged"
        )
    latest = latest_applied(engine)
    if latest is not None and latest.release_year is not None and latest.release_year > name.release_year:
        return (
            f"{name.name} belongs to the {name.release_year} release, older than {latest.name} "
            f"(the {latest.release_year} release), already applied"
        )
    update = latest_applied(engine, "update")
    if update is None or update.release_year is None or update.sequence is None:
        return None
    update_key = (update.release_year, update.sequence)
    if key < update_key:
        return (
            f"{name.name} comes before {update.name}, already applied on {_when(update)} "
            "(update files must be applied in order)"
        )
    gap = name.sequence - update.sequence - 1
    if name.kind == "update" and update.release_year == name.release_year and gap > 0:
        first = nlm_name(update.release_year, update.sequence + 1)
        last = nlm_name(update.release_year, name.sequence - 1)
        missing = first if gap == 1 else f"{first} to {last}"
        return (
            f"{name.name} would skip {gap} update file(s) after {update.name}: {missing} not applied "
            "(apply it first, or its changes and deletions are lost)"
        )
    return None


def _as(applied: AppliedFile, name: str) -> str:
    return "" if applied.name == name else f" as {applied.name}"


def _when(applied: AppliedFile) -> str:
    run = f" (run {applied.run_id})" if applied.run_id is not None else ""
    return f"{applied.applied_at:%Y-%m-%d %H:%M} UTC{run}"


def _add_enrichment(total: EnrichReport, part: EnrichReport) -> EnrichReport:
    """Sum of two batches' enrichment reports."""

    def add(a: SourceCounts, b: SourceCounts) -> None:
        a.asked += b.asked
        a.updated += b.updated
        a.unchanged += b.unchanged
        a.not_found += b.not_found
        a.failed.extend(b.failed)

    add(total.pmc, part.pmc)
    add(total.crossref, part.crossref)
    total.created_from_crossref.extend(part.created_from_crossref)
    total.conflicts.extend(part.conflicts)
    total.errors.extend(part.errors)
    return total
