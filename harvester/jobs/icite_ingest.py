"""``harvest ingest-icite``: iCite's monthly database snapshot files, streamed into the database.

Two kinds of CSV file (plain or gzip), told apart by their header: the metadata file (``pmid``, ``doi``,
``title``, ..., ``relative_citation_ratio``, ``cited_by``, ``references``, ``last_modified``: one row per
PMID) and ``open_citation_collection.csv`` (``citing,referenced``). Rows are read one at a time and
stored in chunks, so memory does not grow with the file: what it holds is the chunk and the set of
stored PMIDs. Metrics are kept for stored articles only (they are rows of an article); citation edges
for pairs with a stored end, or all of them with ``all_edges``. Loading is idempotent (what is kept
already is not written again), and a file is recorded in ``bulk_files`` once it has been applied whole:
the same bytes again are skipped unless forced.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy.engine import Engine

from db.bulk import applied_by_checksum
from db.icite import add_edges_batch, record_snapshot, store_icite, stored_pmids
from enrich.icite_json import parse_icite_record
from enrich.records import IciteRecord
from harvester.core.errors import BulkFileError, ParseError

log = logging.getLogger(__name__)

METADATA = "icite-metadata"
CITATIONS = "icite-citations"
CHUNK_RECORDS = 2_000
CHUNK_EDGES = 20_000


@dataclass(slots=True)
class SnapshotReport:
    """What loading one file did."""

    path: str
    kind: str | None = None
    skipped: bool = False  # applied before (same checksum)
    rows: int = 0
    metrics_updated: int = 0
    metrics_unchanged: int = 0
    not_stored: int = 0  # metadata rows of PMIDs no stored article has
    edges_added: int = 0
    payloads_added: int = 0
    rejected: list[str] = field(default_factory=list)  # "line N: reason"

    @property
    def writes(self) -> int:
        """Rows this load wrote (metrics rows, edges, payloads): 0 when loaded a second time."""
        return self.metrics_updated + self.edges_added + self.payloads_added

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "kind": self.kind,
            "skipped": self.skipped,
            "rows": self.rows,
            "metrics_updated": self.metrics_updated,
            "metrics_unchanged": self.metrics_unchanged,
            "not_stored": self.not_stored,
            "edges_added": self.edges_added,
            "payloads_added": self.payloads_added,
            "rejected": self.rejected,
        }

    def summary_line(self) -> str:
        if self.skipped:
            return f"{self.path}: applied before (same checksum); skipped"
        return (
            f"{self.path}: {self.kind}, {self.rows} rows; metrics {self.metrics_updated} updated, "
            f"{self.metrics_unchanged} unchanged, {self.not_stored} not stored; "
            f"edges {self.edges_added} added" + (f"; {len(self.rejected)} rejected" if self.rejected else "")
        )


def _checksum(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _open_text(path: Path) -> IO[str]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    raw: IO[bytes] = gzip.GzipFile(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    csv.field_size_limit(min(sys.maxsize, 1 << 30))  # cited_by of a much-cited article is long
    try:
        with _open_text(path) as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, row
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise BulkFileError(f"{path}: cannot be read: {exc}", path=str(path)) from None


def _kind(path: Path) -> str:
    try:
        with _open_text(path) as handle:
            header = next(csv.reader(handle), [])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise BulkFileError(f"{path}: cannot be read: {exc}", path=str(path)) from None
    names = {h.strip().lower() for h in header}
    if {"citing", "referenced"} <= names:
        return CITATIONS
    if "pmid" in names:
        return METADATA
    raise BulkFileError(
        f"{path}: not an iCite snapshot file (its header has neither pmid nor citing,referenced)",
        path=str(path),
    )


def _pmid(text: str | None) -> str | None:
    value = (text or "").strip()
    if value.isdigit() and len(value) <= 12 and int(value) > 0:
        return str(int(value))
    return None


def ingest_icite_file(
    path: Path,
    *,
    engine: Engine,
    all_edges: bool = False,
    force: bool = False,
    run_id: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SnapshotReport:
    """Load one snapshot file (see the module docstring).

    Raises:
        BulkFileError: unreadable, truncated, or not an iCite snapshot file (what was stored of it stays
            stored; it is not recorded as applied, so running it again completes it).
        StorageError: the database could not be written.
    """
    report = SnapshotReport(str(path))
    sha256, size = _checksum(path)
    if not force and applied_by_checksum(engine, sha256) is not None:
        report.skipped = True
        return report
    report.kind = _kind(path)
    stored = stored_pmids(engine)
    now = datetime.now(UTC)
    if report.kind == METADATA:
        _load_metadata(
            path, engine, report, stored, all_edges=all_edges, now=now, run_id=run_id, progress=progress
        )
    else:
        _load_citations(path, engine, report, stored, all_edges=all_edges, progress=progress)
    record_snapshot(
        engine,
        name=path.name,
        kind=report.kind,
        sha256=sha256,
        size=size,
        records=report.rows,
        at=now,
        run_id=run_id,
    )
    return report


def _load_metadata(
    path: Path,
    engine: Engine,
    report: SnapshotReport,
    stored: set[str],
    *,
    all_edges: bool,
    now: datetime,
    run_id: int | None,
    progress: Callable[[int], None] | None,
) -> None:
    chunk: list[IciteRecord] = []

    def flush() -> None:
        if not chunk:
            return
        result = store_icite(
            engine,
            chunk,
            url=path.name,
            fetched_at=now,
            run_id=run_id,
            edges_for_all=all_edges,
            stored_pmids=stored,
        )
        report.metrics_updated += len(result.updated)
        report.metrics_unchanged += len(result.unchanged)
        report.edges_added += result.edges_added
        report.payloads_added += result.payloads_added
        report.not_stored += len(result.not_stored)
        if progress is not None:
            progress(len(chunk))
        chunk.clear()

    for line, row in _rows(path):
        report.rows += 1
        pmid = _pmid(row.get("pmid"))
        if pmid is None:
            report.rejected.append(f"line {line}: pmid {str(row.get('pmid'))[:30]!r} is not a PMID")
            continue
        if pmid not in stored and not all_edges:
            report.not_stored += 1
            continue
        try:
            chunk.append(parse_icite_record({k: v for k, v in row.items() if k is not None}))
        except ParseError as exc:
            report.rejected.append(f"line {line}: {exc.message}")
            continue
        if len(chunk) >= CHUNK_RECORDS:
            flush()
    flush()


def _load_citations(
    path: Path,
    engine: Engine,
    report: SnapshotReport,
    stored: set[str],
    *,
    all_edges: bool,
    progress: Callable[[int], None] | None,
) -> None:
    keep = None if all_edges else stored
    chunk: list[tuple[str, str]] = []
    for line, row in _rows(path):
        report.rows += 1
        citing, cited = _pmid(row.get("citing")), _pmid(row.get("referenced"))
        if citing is None or cited is None:
            report.rejected.append(f"line {line}: not a pair of PMIDs")
            continue
        if keep is None or citing in keep or cited in keep:
            chunk.append((citing, cited))
        if len(chunk) >= CHUNK_EDGES:
            report.edges_added += add_edges_batch(engine, chunk, stored_pmids=None)
            chunk = []
        if progress is not None and report.rows % CHUNK_EDGES == 0:
            progress(CHUNK_EDGES)
    if chunk:
        report.edges_added += add_edges_batch(engine, chunk, stored_pmids=None)


def ingest_icite_files(
    paths: Sequence[Path],
    *,
    engine: Engine,
    all_edges: bool = False,
    force: bool = False,
    run_id: int | None = None,
) -> list[SnapshotReport]:
    """Load snapshot files in the order given; a file that cannot be read stops the run (BulkFileError)."""
    return [
        ingest_icite_file(path, engine=engine, all_edges=all_edges, force=force, run_id=run_id)
        for path in paths
    ]
