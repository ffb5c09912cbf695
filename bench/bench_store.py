"""Parse + store into SQLite and into PostgreSQL, then re-store the same file (nothing changed), per run.

    python bench/bench_store.py --records 30000 --runs 3 [--postgres-url URL] [--dialects sqlite,postgresql]

For each run and each dialect, in fresh interpreters so that each peak RSS is its own:

  first     harvester.jobs.ingest.ingest_files of the corpus (what `harvest ingest FILE` does: a checksum
            pass, then on one thread scan_pubmed + a lookup of what is stored + parsing of the rest, on
            the other db.store.store_articles, in batches of 1,000) into an empty database (a new SQLite
            file, or a new schema on the PostgreSQL server)
  restore   the same again into that same database, of a copy of the corpus with one more newline at the
            end (so the file's checksum differs and it is applied, not skipped): every record is
            unchanged, so none is parsed and nothing but the file's record is written

Each measurement reports its wall time, its CPU time (user + system of the measuring process and of the
reading process it waited for) and, for PostgreSQL, the CPU time of the whole server over the load (its
processes' time from /proc, see ServerCpu: the server must run on this machine and be otherwise idle).
``--first-only`` leaves the re-store out. ``--dialects`` takes a variant besides ``sqlite`` and
``postgresql``: ``postgresql+thread`` reads the file in a thread of the storing process, as PostgreSQL's
large files were read before they got a reading process of their own (harvester.jobs.ingest.
READ_IN_PROCESS_XML_BYTES patched in the measuring process). PostgreSQL takes its
rows by COPY (db/pg_copy.py, called by db/inserts.py); the figures before that change, with the helpers
swapped in by this script, are in bench/README.md.

Ratios are taken per run (postgresql.first / sqlite.first; first / restore per dialect), so a busy machine
slows both sides of each ratio alike; the medians of the per-run ratios are reported. Targets (issue
"PostgreSQL as a first-class store"): PostgreSQL within 2x of SQLite; a re-store at least 3x faster than the
first store; issue 12 asks PostgreSQL within 1.3x. The PostgreSQL URL defaults to $HARVEST_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: make harvester/db importable
sys.path.insert(0, str(HERE))

from bench_parse import ensure_corpus  # noqa: E402 - after the path set-up above


def store_corpus(corpus: Path, url: str) -> dict[str, int]:
    """Load the corpus as `harvest ingest FILE` does (harvester.jobs.ingest.ingest_files); the counts."""
    from db.engine import open_database
    from harvester.core.settings import Settings
    from harvester.jobs.ingest import ingest_files

    engine = open_database(url)
    try:
        report = ingest_files([corpus], settings=Settings(database_url=url), services=None, engine=engine)
    finally:
        engine.dispose()
    [applied] = report.files
    if applied.outcome != "applied":
        raise SystemExit(f"{corpus}: {applied.outcome} ({applied.message})")
    return {"created": applied.created, "updated": applied.updated, "unchanged": applied.unchanged}


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of the children it has waited for (SQLite's reader)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class ServerCpu:
    """CPU time of the whole PostgreSQL server (it must run on this machine) over one load.

    Every process of the server is a child of its postmaster: the backends of this process's connections,
    of its reading process's connection, and the server's own writers (WAL writer, checkpointer,
    autovacuum) that the load keeps busy. A snapshot is the user + system time of each live child
    (``/proc/<pid>/stat``) plus the postmaster's ``cutime`` + ``cstime``, where an ended child's time goes
    once the postmaster has reaped it; the load's server CPU is the difference of two snapshots. The
    second is taken once the server has as many children as before the load (its connections have
    ended), or after 10 s. Whatever else the server does meanwhile is counted too: run it on a quiet
    server.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            self.postmaster = int(_stat(backend)[1])  # the backend's parent, read while it lives
        engine.dispose()
        self._wait_for(lambda: not Path(f"/proc/{backend}").exists())
        self.children_before = len(self._children())
        self.started = self._snapshot()

    def _children(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int(_stat(int(entry.name))[1]) == self.postmaster:
                        pids.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue  # ended meanwhile
        return pids

    def _snapshot(self) -> float:
        ticks = sum(int(f) for f in _stat(self.postmaster)[13:15])  # cutime, cstime: reaped children
        for pid in self._children():
            try:
                ticks += sum(int(f) for f in _stat(pid)[11:13])  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return ticks / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _wait_for(condition: Any, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.05)

    def seconds(self) -> float:
        """The server's CPU seconds since this object was made."""
        self._wait_for(lambda: len(self._children()) <= self.children_before)
        return self._snapshot() - self.started


def _stat(pid: int) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` from the state on (field 3 is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def run_child(corpus: Path, url: str, reading_process: bool = True) -> int:
    import resource

    import lxml.etree  # noqa: F401 - imported before timing, as in bench_parse

    import harvester.sources.pubmed_xml

    server = ServerCpu(url) if url.startswith("postgresql") else None
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    if not reading_process:  # read in a thread of this process, as before PostgreSQL got the process
        import harvester.jobs.ingest

        harvester.jobs.ingest.READ_IN_PROCESS_XML_BYTES = {"sqlite": 0}
    counts = store_corpus(corpus, url)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    measured: dict[str, Any] = {"seconds": seconds, "cpu_seconds": cpu, "rss_mb": rss_mb, **counts}
    if server is not None:
        measured["server_cpu_seconds"] = server.seconds()
    print(json.dumps(measured))
    return 0


def spawn(corpus: Path, url: str, variant: str = "") -> dict[str, Any]:
    """One load in a fresh interpreter; ``variant`` "+thread" reads in a thread (see the docstring)."""
    flags = ["--reading-thread"] if "+thread" in variant else []
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-url", url, "--corpus", str(corpus), *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"a measurement failed: {tail}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


class Database:
    """A fresh database per run: a new SQLite file, or a new schema on the PostgreSQL server."""

    def __init__(self, dialect: str, postgres_url: str | None, tmp: Path) -> None:
        self.dialect = dialect
        self.schema: str | None = None
        self._admin: Any = None
        if dialect == "sqlite":
            self.url = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.sqlite'}"
            return
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        if postgres_url is None:
            raise SystemExit("PostgreSQL: give --postgres-url or set HARVEST_TEST_POSTGRES_URL")
        server = make_url(postgres_url)
        if server.drivername == "postgresql":
            server = server.set(drivername="postgresql+psycopg")
        self.schema = f"bench_{uuid.uuid4().hex[:12]}"
        self._admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')
        url = server.update_query_dict({"options": f"-csearch_path={self.schema}"})
        self.url = url.render_as_string(hide_password=False)

    def drop(self) -> None:
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self._admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=None, help="default: bench/out/corpus-<records>.xml")
    parser.add_argument(
        "--fixtures", type=Path, default=None, help="to build the corpus (default: $HARVEST_FIXTURES)"
    )
    parser.add_argument("--postgres-url", default=os.environ.get("HARVEST_TEST_POSTGRES_URL"))
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--first-only", action="store_true", help="leave out the re-store")
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--reading-thread", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    corpus: Path = args.corpus or HERE / "out" / f"corpus-{args.records}.xml"
    if args.child_url:
        return run_child(corpus, args.child_url, reading_process=not args.reading_thread)
    fixtures = args.fixtures or (
        Path(os.environ["HARVEST_FIXTURES"]) if os.environ.get("HARVEST_FIXTURES") else None
    )
    ensure_corpus(corpus, args.records, fixtures)
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]

    results: list[dict[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        again = Path(tmp) / f"again-{corpus.name}"
        with corpus.open("rb") as source, again.open("wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
            target.write(b"\n")
        for run in range(1, args.runs + 1):
            measured: dict[str, dict[str, Any]] = {}
            for dialect in dialects:
                base, _, variant = dialect.partition("+")
                database = Database(base, args.postgres_url, Path(tmp))
                try:
                    measured[f"{dialect}.first"] = spawn(corpus, database.url, "+" + variant)
                    if not args.first_only:
                        measured[f"{dialect}.restore"] = spawn(again, database.url, "+" + variant)
                finally:
                    database.drop()
            results.append(measured)
            print(
                f"run {run}: " + ", ".join(f"{k} {v['seconds']:.2f} s" for k, v in measured.items()),
                flush=True,
            )

    summary = report(results, dialects, args.records)
    out = HERE / "out" / f"store-{args.records}.bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"records": args.records, "runs": results, **summary}, indent=2))
    print(f"\nwritten {out}")
    return 0


def report(results: list[dict[str, dict[str, Any]]], dialects: list[str], records: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    print(
        f"\n{'measurement':<22} {'wall time per run (s)':<28} {'median s':>9} {'records/s':>10}"
        f" {'CPU s':>7} {'server CPU s':>12} {'peak RSS MB':>12}"
    )
    for key in results[0]:
        seconds = [run[key]["seconds"] for run in results]
        median = statistics.median(seconds)
        cpu = statistics.median(run[key]["cpu_seconds"] for run in results)
        server = [run[key]["server_cpu_seconds"] for run in results if "server_cpu_seconds" in run[key]]
        server_median = statistics.median(server) if server else None
        peak = max(run[key]["rss_mb"] for run in results)
        counts = {c: results[0][key][c] for c in ("created", "updated", "unchanged")}
        per_run = ", ".join(f"{s:.2f}" for s in seconds)
        shown = "-" if server_median is None else f"{server_median:.2f}"
        print(
            f"{key:<22} {per_run:<28} {median:>9.2f} {records / median:>10.0f} {cpu:>7.2f} {shown:>12}"
            f" {peak:>12.0f}   {counts}"
        )
        summary[key] = {
            "median_s": median,
            "median_cpu_s": cpu,
            "median_server_cpu_s": server_median,
            "peak_rss_mb": peak,
            **counts,
        }

    def total_cpu(measured: dict[str, Any]) -> float:
        return float(measured["cpu_seconds"] + measured.get("server_cpu_seconds", 0.0))

    def ratio(top: str, bottom: str, target: str) -> None:
        if top not in results[0] or bottom not in results[0]:
            return
        values = [run[top]["seconds"] / run[bottom]["seconds"] for run in results]
        cpu = [total_cpu(run[top]) / total_cpu(run[bottom]) for run in results]
        median = statistics.median(values)
        print(
            f"{top} / {bottom}: median {median:.2f}"
            f"  per run [{', '.join(f'{v:.2f}' for v in values)}]  ({target});"
            f" CPU time (with the server's) {statistics.median(cpu):.2f}"
        )
        summary[f"{top}/{bottom}"] = {
            "median": median,
            "per_run": values,
            "cpu_median": statistics.median(cpu),
        }

    print()
    ratio("postgresql.first", "sqlite.first", "target <= 1.3")
    for dialect in dialects:
        if dialect.startswith("postgresql+"):
            ratio(f"{dialect}.first", "sqlite.first", "target <= 1.3")
    for dialect in dialects:
        ratio(f"{dialect}.first", f"{dialect}.restore", "target >= 3.0")
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
