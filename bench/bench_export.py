"""Peak memory of exporting a reporting view or a query of N and 4N rows: streamed, and fetched whole.

    python bench/bench_export.py --rows 25000 --runs 3 [--postgres URL] [--keep DIR]

Two databases are built, with N and 4N synthetic articles (two authors each, the first with an
affiliation), by inserting rows directly: the export reads rows, so how they were stored does not matter.
Each measurement runs in a fresh interpreter, which opens the database, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``, Linux), notes its RSS, exports to /dev/null, and reads the peak again
(``VmHWM``): the figure is how far the export raised RSS above where it started. Measurements:

  view      db.reporting.export_report(view=report_author_articles), JSON Lines (2 rows per article)
  query     db.reporting.export_report(query=...), CSV: one row per article
  fetchall  the same view read with fetchall() and then written: what not streaming would cost

Each is measured twice: RSS growth, and the peak of Python allocations (tracemalloc, which leaves out the
driver's own memory). Streaming holds when ``view`` and ``query`` do not grow with N (ratio 4N/N near 1)
while ``fetchall`` does. On SQLite the RSS of a streamed export still grows as SQLite's page cache fills
with the pages read, up to the cap db.engine sets (64 MB); ``--sqlite-cache-kb 2000`` shows that growth
is the cache. The medians of ``--runs`` runs are printed, with the ratio 4N/N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: make db importable

MODES = ("view", "query", "fetchall")
VIEW = "report_author_articles"
QUERY = "SELECT a.pmid, a.title, a.pub_year, j.title FROM articles a JOIN journals j ON j.id = a.journal_id"
CHUNK = 5000
HEADER = f"{'mode':<10}{'N rows':>10}{'N MB':>8}{'4N rows':>10}{'4N MB':>8}{'4N/N':>7}{'4N s':>7}"


def build(url: str, articles: int) -> None:
    """A database with ``articles`` synthetic articles, two authors each."""
    import sqlalchemy as sa

    from db.engine import open_database
    from db.models import metadata

    t = metadata.tables
    now = datetime(2024, 5, 1, tzinfo=UTC)
    engine = open_database(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(t["journals"]), [{"id": 1, "journal_key": "nlm:1", "title": "Bench Journal"}]
            )
            for start in range(1, articles + 1, CHUNK):
                ids = range(start, min(start + CHUNK, articles + 1))
                conn.execute(
                    sa.insert(t["articles"]),
                    [
                        {
                            "id": i,
                            "pmid": str(900_000_000 + i),
                            "doi": f"10.5555/bench.{i}",
                            "title": f"A synthetic article number {i} about the cost of exporting rows",
                            "journal_id": 1,
                            "pub_year": 2000 + i % 25,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in ids
                    ],
                )
                authors = [
                    {
                        "article_id": i,
                        "position": p,
                        "last_name": f"Author{i % 997}",
                        "fore_name": "Jane",
                        "initials": "J",
                        "orcid": f"0000-0002-{i % 10000:04d}-000{p}",
                        "valid": True,
                        "equal_contrib": False,
                    }
                    for i in ids
                    for p in (1, 2)
                ]
                conn.execute(sa.insert(t["authors"]), authors)
                conn.execute(
                    sa.insert(t["author_affiliations"]),
                    [
                        {
                            "article_id": i,
                            "author_position": 1,
                            "position": 1,
                            "affiliation": f"Dept {i % 50}",
                        }
                        for i in ids
                    ],
                )
    finally:
        engine.dispose()


def measure(
    url: str, mode: str, *, trace: bool = False, sqlite_cache_kb: int | None = None
) -> dict[str, Any]:
    """Run one export in this interpreter; returns its rows, its RSS growth (kB) and its wall time.

    With ``trace``, ``growth_kb`` is instead the peak of memory Python allocated (tracemalloc): it leaves
    out the database driver's own memory (SQLite's page cache, up to the 64 MB db.engine allows).
    """
    import tracemalloc

    import sqlalchemy as sa

    from db.engine import begin_read, open_database
    from db.reporting import export_report, get_view

    engine = open_database(url)
    if sqlite_cache_kb is not None and engine.dialect.name == "sqlite":

        def set_cache(dbapi_connection: Any, _record: object) -> None:
            dbapi_connection.execute(f"PRAGMA cache_size=-{int(sqlite_cache_kb)}")

        sa.event.listen(engine, "connect", set_cache)
        engine.dispose()  # connections from now on get the smaller cache
    with begin_read(engine) as conn:  # connect and warm up outside the measurement
        conn.execute(sa.text("SELECT COUNT(*) FROM articles")).scalar_one()
    before = _reset_peak_rss_kb()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    with open(os.devnull, "w", encoding="utf-8") as out:
        if mode == "view":
            rows = export_report(engine, out, "jsonl", view=VIEW)
        elif mode == "query":
            rows = export_report(engine, out, "csv", query=QUERY)
        else:
            view = get_view(VIEW)
            with begin_read(engine) as conn:
                fetched = conn.execute(sa.text(f"SELECT * FROM {view.name}")).fetchall()  # noqa: S608
            for row in fetched:
                out.write(json.dumps(dict(zip(view.column_names, row, strict=True)), default=str) + "\n")
            rows = len(fetched)
    seconds = time.perf_counter() - started
    after = _peak_rss_kb()
    if trace:
        before, after = 0, tracemalloc.get_traced_memory()[1] // 1024
        tracemalloc.stop()
    engine.dispose()
    return {"rows": rows, "growth_kb": after - before, "peak_kb": after, "seconds": round(seconds, 3)}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss_kb() -> int:
    """Reset the peak-RSS mark (Linux 4.0+) and return the current RSS; elsewhere, the peak so far."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_kb() -> int:
    try:
        return _status_kb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(url: str, mode: str, *, trace: bool, sqlite_cache_kb: int | None) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", mode, "--url", url]
    command += ["--trace"] if trace else []
    command += ["--sqlite-cache-kb", str(sqlite_cache_kb)] if sqlite_cache_kb is not None else []
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _report(
    mode: str, urls: dict[int, str], sizes: tuple[int, int], runs: int, *, trace: bool, cache: int | None
) -> None:
    growth: dict[int, list[int]] = {n: [] for n in sizes}
    rows: dict[int, int] = {}
    seconds: list[float] = []
    for _ in range(runs):
        for n in sizes:  # alternate, so a busy machine slows both sizes alike
            result = run_child(urls[n], mode, trace=trace, sqlite_cache_kb=cache)
            growth[n].append(result["growth_kb"])
            rows[n] = result["rows"]
            if n == sizes[1]:
                seconds.append(result["seconds"])
    small, large = (statistics.median(growth[n]) / 1024 for n in sizes)
    ratio = large / small if small > 0.05 else float("nan")
    print(
        f"{mode:<10}{rows[sizes[0]]:>10}{small:>8.1f}{rows[sizes[1]]:>10}{large:>8.1f}"
        f"{ratio:>7.2f}{statistics.median(seconds):>7.2f}"
    )


def postgres_schema_url(base: str) -> tuple[str, Any]:
    """A new schema on the server, and a function that drops it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25_000, help="N: articles in the small database")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", help="also measure on this PostgreSQL server (a schema is created)")
    parser.add_argument("--keep", type=Path, help="build the SQLite files here and keep them")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sqlite-cache-kb",
        type=int,
        help="SQLite page cache for the exports (db.engine sets 64 MB): a small one shows the RSS growth "
        "on SQLite is that cache filling, not rows kept",
    )
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(
            json.dumps(
                measure(args.url, args.measure, trace=args.trace, sqlite_cache_kb=args.sqlite_cache_kb)
            )
        )
        return 0

    sizes = (args.rows, 4 * args.rows)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        targets: list[tuple[str, dict[int, str]]] = []
        cleanups = []
        sqlite_urls = {}
        for n in sizes:
            path = directory / f"export-{n}.sqlite"
            path.unlink(missing_ok=True)
            sqlite_urls[n] = f"sqlite:///{path}"
        targets.append(("sqlite", sqlite_urls))
        if args.postgres:
            pg_urls = {}
            for n in sizes:
                url, drop = postgres_schema_url(args.postgres)
                pg_urls[n] = url
                cleanups.append(drop)
            targets.append(("postgresql", pg_urls))
        try:
            for dialect, urls in targets:
                for n, url in urls.items():
                    started = time.perf_counter()
                    build(url, n)
                    print(
                        f"{dialect}: built {n} articles in {time.perf_counter() - started:.1f} s",
                        file=sys.stderr,
                    )
                for trace, what in (
                    (False, "peak RSS growth"),
                    (True, "peak Python allocations (tracemalloc)"),
                ):
                    print(f"\n{dialect}: {what} of one export, median of {args.runs} runs, MB")
                    print(HEADER)
                    for mode in MODES:
                        _report(mode, urls, sizes, args.runs, trace=trace, cache=args.sqlite_cache_kb)
        finally:
            for drop in cleanups:
                drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
