"""Scale-out of ``harvest ingest`` into PostgreSQL: 1, 2 and 4 workers, per-record costs, and a projection.

    python bench/bench_scale.py --files 8 --records-per-file 3000 --workers 1,2,4 --runs 3 [--pg-url URL]

The corpus is make_corpus.py's (as it is), cut into ``--files`` baseline files of ``--records-per-file``
records with NLM's names (``baseline/pubmed26n0001.xml`` ...), so that workers have files to share. Each
measurement is one ``harvest ingest`` process of the whole folder into a fresh database (a new SQLite file,
or a new PostgreSQL schema), migrated before the clock starts:

  sqlite      ``harvest ingest baseline/`` into SQLite (one process, as without --workers)
  pg          the same into PostgreSQL
  pg-wN       ``harvest ingest --workers N baseline/`` into PostgreSQL: the work queue, N worker processes

For each: wall time and records per second; the CPU seconds of the ``harvest`` processes (the command and
its workers: this process's RUSAGE_CHILDREN, taken before and after) and of the PostgreSQL server processes
that served them: every backend whose application_name is the run's own (pg_stat_activity gives their pids,
looked up every 0.5 s; /proc/<pid>/stat their CPU, read every 0.05 s, so a backend that ends loses at most
its last 0.05 s); and how much of the time the writers' lock was held whole (db.engine.begin_write: one
writer at a time; the store's batches of PMID ranges hold it shared, beside each other, and wait only for
a batch of the same PMIDs), sampled in pg_locks every 0.05 s. All per record.

The projection of the full 2026 baseline (1,334 files, about 40.9 million records) takes the per-record
costs of the largest worker count measured and asks which of three limits a rate meets first:

  worker cores      C cores / worker CPU s per record (C = 8 and 32)
  PostgreSQL host   P cores / server CPU s per record (P = --pg-cores, default 16)
  writers' lock     1 / (whole-lock s per record): what is written by one writer at a time (deletions,
                    each file's record, batches of scattered PMIDs), whatever the cores

The server must run on this machine (its processes' /proc entries are read). The machine is shared: the
load average before and after each run is printed beside it; per-record CPU is steadier than wall time on
a busy machine, which is why scaling is judged by it (per-record cost within 10% of one worker's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: make harvester/db importable
sys.path.insert(0, str(HERE))  # and make_corpus

BASELINE_FILES = 1334  # NLM's 2026 baseline: pubmed26n0001 to pubmed26n1334
BASELINE_RECORDS = 40_900_000
WORKER_CORES = (8, 32)
SCALING_TOLERANCE = 0.10  # per-record cost at N workers at most 10% above one worker's
WRITER_LOCK_KEY = 0x50_4D_48_56  # db.engine's writers' lock ("PMHV"), scoped by hashtext(schema)
TICK = 0.05
DISCOVER_EVERY = 10  # ticks between pg_stat_activity look-ups
CLOCK = os.sysconf("SC_CLK_TCK")


def make_files(folder: Path, files: int, per_file: int, fixtures: Path) -> int:
    """``files`` baseline files of ``per_file`` records each from make_corpus's stream; the records total."""
    from make_corpus import article_templates, corpus_chunks, fixture_files

    templates = article_templates(fixture_files(fixtures))
    folder.mkdir(parents=True, exist_ok=True)
    chunks = corpus_chunks(templates, files * per_file)
    head = next(chunks)
    tail = b"</PubmedArticleSet>\n"
    for number in range(1, files + 1):
        with (folder / f"pubmed26n{number:04d}.xml").open("wb") as out:
            out.write(head)
            for _ in range(per_file):
                out.write(next(chunks))
            out.write(tail)
    return files * per_file


def _cpu_of(pid: int) -> float | None:
    """CPU seconds (user + system) of a process from /proc, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK


class ServerSampler:
    """Samples the PostgreSQL backends of one run (by application_name) and the writers' lock."""

    def __init__(self, admin_url: str, application: str, schema: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.application = application
        self.schema = schema
        self.cpu: dict[int, tuple[float, float]] = {}  # pid -> (first seen, last seen) CPU seconds
        self.lock_ticks = 0
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sa = self._sa
        lock_query = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND classid = CAST(:key AS oid) AND objid = CAST(hashtext(:schema) AS oid)"
            " AND mode = 'ExclusiveLock'"  # held whole; store batches of PMID ranges hold it shared
        )
        find = sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
        with self.engine.connect() as conn:
            tick = 0
            while not self._stop.is_set():
                if tick % DISCOVER_EVERY == 0:
                    for (pid,) in conn.execute(find, {"name": self.application}):
                        now = _cpu_of(int(pid))
                        if now is not None and pid not in self.cpu:
                            self.cpu[int(pid)] = (now, now)
                for pid, (first, _last) in list(self.cpu.items()):
                    now = _cpu_of(pid)
                    if now is not None:
                        self.cpu[pid] = (first, now)
                held = conn.execute(lock_query, {"key": WRITER_LOCK_KEY, "schema": self.schema}).scalar_one()
                self.lock_ticks += 1 if held else 0
                self.ticks += 1
                tick += 1
                self._stop.wait(TICK)

    def __enter__(self) -> ServerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()

    @property
    def server_cpu(self) -> float:
        return sum(last - first for first, last in self.cpu.values())

    @property
    def lock_share(self) -> float:
        return self.lock_ticks / self.ticks if self.ticks else 0.0


@contextmanager
def pg_schema(base: str) -> Iterator[tuple[str, str, str]]:
    """A fresh schema: (URL for harvest, its schema name, the application_name its sessions carry)."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    server = make_url(base)
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+psycopg")
    schema = f"bench_scale_{uuid.uuid4().hex[:12]}"
    application = schema
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = server.update_query_dict({"options": f"-csearch_path={schema}", "application_name": application})
    try:
        yield url.render_as_string(hide_password=False), schema, application
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ingest(url: str, folder: Path, workers: int | None, home: Path) -> tuple[float, float, str]:
    """One ``harvest ingest`` of the folder: wall seconds, CPU seconds of it and its workers, its output."""
    from db.engine import open_database

    open_database(url).dispose()  # migrated before the clock starts
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")},
        "HOME": str(home),
        "HARVEST_EMAIL": "bench@example.org",
        "HARVEST_RATE_DIR": "off",
    }
    command = [sys.executable, "-m", "harvester", "--db", url, "ingest", str(folder)]
    if workers is not None:
        command[6:6] = ["--workers", str(workers)]
    before_cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall, cpu = time.perf_counter() - started, _children_cpu() - before_cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:])} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return wall, cpu, done.stdout


def worker_start_up(args: argparse.Namespace, home: Path) -> float:
    """CPU seconds of one ``harvest worker --until-done`` that finds the queue empty: what each worker
    process costs before its first record (interpreter, imports, the database check, its session)."""
    from db.engine import open_database

    with pg_schema(args.pg_url) as (url, _schema, _application):
        open_database(url).dispose()
        env = {
            **os.environ,
            "HOME": str(home),
            "HARVEST_EMAIL": "bench@example.org",
            "HARVEST_RATE_DIR": "off",
        }
        before = _children_cpu()
        subprocess.run(
            [sys.executable, "-m", "harvester", "--db", url, "-q", "worker", "--until-done"],
            env=env,
            check=True,
        )
        return _children_cpu() - before


def measure(
    name: str, folder: Path, records: int, args: argparse.Namespace, home: Path, start_up: float
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            wall, cpu, _out = run_ingest(f"sqlite:///{Path(tmp) / 'bench.sqlite'}", folder, None, home)
        server, lock = 0.0, None
    else:
        workers = None if name == "pg" else int(name.removeprefix("pg-w"))
        with pg_schema(args.pg_url) as (url, schema, application):
            with ServerSampler(args.pg_url, application, schema) as sampler:
                wall, cpu, _out = run_ingest(url, folder, workers, home)
            server, lock = sampler.server_cpu, sampler.lock_share
    result = {
        "name": name,
        "records": records,
        "wall_s": wall,
        "records_per_s": records / wall,
        "harvest_cpu_s": cpu,
        "server_cpu_s": server,
        "harvest_cpu_per_record_ms": 1000 * cpu / records,
        # without the start-up of the N worker processes, which a real baseline spreads over 40 M records
        "harvest_net_cpu_per_record_ms": 1000 * max(0.0, cpu - _workers_of(name) * start_up) / records,
        "worker_start_up_cpu_s": start_up,
        "server_cpu_per_record_ms": 1000 * server / records,
        "writer_lock_share": lock,
        "writer_lock_per_record_ms": None if lock is None else 1000 * lock * wall / records,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    print(
        f"  {name:<7} {wall:8.1f} s {records / wall:8.0f} rec/s  "
        f"harvest {result['harvest_cpu_per_record_ms']:.2f} ms/rec  "
        f"server {result['server_cpu_per_record_ms']:.2f} ms/rec"
        + (f"  writers' lock held whole {100 * lock:.0f}% of the time" if lock is not None else "")
        + f"  (load {load_before:.1f} -> {result['load_after']:.1f})",
        flush=True,
    )
    return result


def _workers_of(name: str) -> int:
    return int(name.removeprefix("pg-w")) if name.startswith("pg-w") else 0


def _median(runs: list[dict[str, Any]], name: str, key: str) -> float:
    values = [run[name][key] for run in runs if run[name].get(key) is not None]
    return statistics.median(values) if values else float("nan")


def projection(runs: list[dict[str, Any]], name: str, pg_cores: int) -> list[dict[str, Any]]:
    """The full baseline's time with C worker cores and one PostgreSQL host, and the first limit met."""
    worker_ms = _median(runs, name, "harvest_net_cpu_per_record_ms")
    server_ms = _median(runs, name, "server_cpu_per_record_ms")
    lock_ms = _median(runs, name, "writer_lock_per_record_ms")
    rows = []
    for cores in WORKER_CORES:
        limits = {
            f"{cores} worker cores": cores / (worker_ms / 1000),
            f"PostgreSQL host ({pg_cores} cores)": pg_cores / (server_ms / 1000),
            "writers' lock held whole (one writer at a time)": 1 / (lock_ms / 1000)
            if lock_ms > 0
            else math.inf,
        }
        first = min(limits, key=lambda k: limits[k])
        rate = limits[first]
        rows.append(
            {
                "worker_cores": cores,
                "limits_records_per_s": limits,
                "saturates_first": first,
                "records_per_s": rate,
                "hours": BASELINE_RECORDS / rate / 3600,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--records-per-file", type=int, default=3000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg-cores", type=int, default=16, help="cores of the PostgreSQL host projected")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("HARVEST_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument("--fixtures", type=Path, default=None, help="default: $HARVEST_FIXTURES")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    fixtures = args.fixtures or (
        Path(os.environ["HARVEST_FIXTURES"]) if os.environ.get("HARVEST_FIXTURES") else None
    )
    if fixtures is None:
        parser.error("give --fixtures DIR or set HARVEST_FIXTURES")
    counts = [int(n) for n in args.workers.split(",")]
    names = ["sqlite", "pg", *(f"pg-w{n}" for n in counts)]
    folder = args.out / f"scale-{args.files}x{args.records_per_file}" / "baseline"
    records = args.files * args.records_per_file
    if not folder.is_dir() or len(list(folder.glob("pubmed26n*.xml"))) != args.files:
        make_files(folder, args.files, args.records_per_file, fixtures)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(
        f"{args.files} files x {args.records_per_file} records ({size / 1e6:.0f} MB) in {folder}; "
        f"{os.cpu_count()} cores"
    )
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-home-") as home:
        for run in range(args.runs):
            print(f"run {run + 1}:")
            start_up = worker_start_up(args, Path(home))
            print(f"  one worker's start-up: {start_up:.2f} CPU s")
            runs.append({name: measure(name, folder, records, args, Path(home), start_up) for name in names})

    print(f"\nmedians of {args.runs} run(s); CPU per record, harvest net of the workers' start-up:")
    print(
        f"{'':<8}{'rec/s':>8} {'harvest ms/rec':>15} {'(net)':>7} {'server ms/rec':>14} {'total net':>10} "
        f"{'whole lock':>10} {'lock ms/rec':>12}"
    )
    base_total = None
    for name in names:
        harvest_ms = _median(runs, name, "harvest_cpu_per_record_ms")
        net_ms = _median(runs, name, "harvest_net_cpu_per_record_ms")
        server_ms = _median(runs, name, "server_cpu_per_record_ms")
        share = _median(runs, name, "writer_lock_share") if name != "sqlite" else float("nan")
        lock_ms = _median(runs, name, "writer_lock_per_record_ms") if name != "sqlite" else float("nan")
        total = net_ms + server_ms
        if name == f"pg-w{counts[0]}":
            base_total = total
        growth = (
            f"  {100 * (total / base_total - 1):+.1f}% vs {counts[0]} worker(s)"
            if base_total and name.startswith("pg-w")
            else ""
        )
        print(
            f"{name:<8}{_median(runs, name, 'records_per_s'):>8.0f} {harvest_ms:>15.2f} {net_ms:>7.2f} "
            f"{server_ms:>14.2f} {total:>10.2f} {100 * share:>9.0f}% {lock_ms:>12.2f}{growth}"
        )
    ratios = [run["pg"]["wall_s"] / run["sqlite"]["wall_s"] for run in runs]
    print(
        f"\nfirst load PostgreSQL / SQLite (wall, one process each): median {statistics.median(ratios):.2f} "
        f"(runs {', '.join(f'{r:.2f}' for r in ratios)}; target <= 1.3)"
    )
    per_record = {
        n: _median(runs, f"pg-w{n}", "harvest_net_cpu_per_record_ms")
        + _median(runs, f"pg-w{n}", "server_cpu_per_record_ms")
        for n in counts
    }
    grows = {n: per_record[n] / per_record[counts[0]] - 1 for n in counts[1:]}
    verdict = all(g <= SCALING_TOLERANCE for g in grows.values())  # must not grow; falling is fine
    print(
        "per-record CPU (workers net of start-up + server) against one worker: "
        + ", ".join(f"{n} workers {100 * g:+.1f}%" for n, g in grows.items())
        + f" -> {'grows by at most' if verdict else 'grows by MORE than'} {100 * SCALING_TOLERANCE:.0f}%"
    )
    largest = f"pg-w{counts[-1]}"
    projected = projection(runs, largest, args.pg_cores)
    print(
        f"\nprojected full 2026 baseline ({BASELINE_FILES} files, {BASELINE_RECORDS / 1e6:.1f} M records), "
        f"costs of {largest}:"
    )
    for row in projected:
        limits = "; ".join(f"{k} {v:,.0f} rec/s" for k, v in row["limits_records_per_s"].items())
        print(
            f"  {row['worker_cores']} worker cores: {row['hours']:.1f} h at {row['records_per_s']:,.0f} "
            "rec/s; "
            f"saturates first: {row['saturates_first']} ({limits})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "files": args.files,
        "records_per_file": args.records_per_file,
        "runs": runs,
        "pg_sqlite_first_load_ratios": ratios,
        "per_record_growth": grows,
        "projection": projected,
    }
    target = args.out / f"scale-{args.files}x{args.records_per_file}.bench.json"
    target.write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
