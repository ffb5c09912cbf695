"""CPU time of each stage of ``harvest ingest``, one at a time, in units of the bare lxml walk.

    python bench/profile_stages.py --records 5000 [--postgres-url URL] [--repeat 3]

Every stage runs alone in this process over the same records (parsed once beforehand where the stage
needs them), and its CPU time (``time.process_time``: this process, all threads) is divided by the bare
walk's of the same file, so a busy machine shifts all the figures alike. The best of ``--repeat`` tries
is kept. The stages:

  bare           bench_parse's bare lxml walk of the file (the unit)
  scan           harvester.sources.pubmed_xml.scan_pubmed: split into records, SHA-256 of each
  parse          parse_pubmed(keep_raw=True)
  scan + parse   scan_pubmed, then each pending record parsed: what the reading process does
  store rows     db.pubmed_rows.store_rows of each record (the articles row, the child tables' tuples,
                 the SHA-256 and retraction statements): the reading process does it after parsing
  pickle rows    pickle.dumps of those rows in chunks of 250, as the reading process sends them
  unpickle rows  pickle.loads of the same, in the storing process
  pickle records, unpickle records   the same of the parsed records themselves: what was sent before
                 the reading process made the rows, for comparison
  compress       db.payloads.compress_payload of each raw record
  store sqlite   db.store.store_articles of the rows in batches of 500 into a fresh SQLite file (the
                 storing process's share: compression plus SQL); the reading side's stages are not in it
  store pg       the same into a fresh PostgreSQL schema (rows by COPY): this process's CPU, and the
                 server's (the backend's user + system time from /proc), given apart
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_parse import ensure_corpus, measure_bare  # noqa: E402


def best_cpu(work: Callable[[], object], repeat: int) -> float:
    """The least CPU time of ``repeat`` runs of ``work``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def backend_seconds(pid: int) -> float:
    """User + system CPU seconds of a local process (a PostgreSQL backend), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    from bench_store import Database

    database = Database("postgresql", url, Path(tempfile.gettempdir()))
    try:
        yield database.url
    finally:
        database.drop()


def store_all(url: str, articles: list[Any], batch: int = 500) -> tuple[float, float]:
    """Store the records into a fresh, migrated database; (this process's CPU s, the server's CPU s)."""
    import sqlalchemy as sa

    from db.engine import open_database
    from db.store import store_articles

    open_database(url).dispose()
    engine = open_database(url)
    backends: dict[int, float] = {}  # backend pid -> its CPU seconds when the connection was made

    def checked_out(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        pid = getattr(getattr(dbapi_connection, "info", None), "backend_pid", None)
        if isinstance(pid, int) and pid not in backends:
            backends[pid] = backend_seconds(pid)

    sa.event.listen(engine.pool, "checkout", checked_out)
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect():  # opened before the clock starts, as the pool keeps it
                pass
        started_server = dict(backends)
        started = time.process_time()
        at = datetime.now(UTC)
        for start in range(0, len(articles), batch):
            store_articles(engine, articles[start : start + batch], url="file:bench", fetched_at=at)
        cpu = time.process_time() - started
        server = sum(backend_seconds(pid) - started_server.get(pid, 0.0) for pid in backends)
    finally:
        engine.dispose()
    return cpu, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--corpus", type=Path, default=None, help="default: bench/out/corpus-<records>.xml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=os.environ.get("HARVEST_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    corpus: Path = args.corpus or HERE / "out" / f"corpus-{args.records}.xml"
    fixtures = os.environ.get("HARVEST_FIXTURES")
    ensure_corpus(corpus, args.records, Path(fixtures) if fixtures else None)

    from db.payloads import compress_payload
    from db.pubmed_rows import store_rows
    from harvester.core.records import Article
    from harvester.sources.pubmed_xml import PendingArticle, parse_pubmed, scan_pubmed

    articles = [a for a in parse_pubmed(corpus, keep_raw=True) if isinstance(a, Article)]
    rows = [store_rows(a) for a in articles]
    raws = [a.raw_xml or b"" for a in articles]
    chunks = [articles[i : i + 250] for i in range(0, len(articles), 250)]
    pickled = [pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for c in chunks]
    row_chunks = [rows[i : i + 250] for i in range(0, len(rows), 250)]
    pickled_rows = [pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for c in row_chunks]

    def scan() -> None:
        with corpus.open("rb") as handle:
            for _ in scan_pubmed(handle):
                pass

    def scan_and_parse() -> None:
        with corpus.open("rb") as handle:
            for record in scan_pubmed(handle):
                if isinstance(record, PendingArticle):
                    record.parse()

    stages: dict[str, Callable[[], object]] = {
        "bare": lambda: measure_bare(corpus),
        "scan": scan,
        "parse": lambda: sum(1 for _ in parse_pubmed(corpus, keep_raw=True)),
        "scan + parse": scan_and_parse,
        "store rows": lambda: [store_rows(a) for a in articles],
        "pickle rows": lambda: [pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for c in row_chunks],
        "unpickle rows": lambda: [pickle.loads(p) for p in pickled_rows],
        "pickle records": lambda: [pickle.dumps(c, protocol=pickle.HIGHEST_PROTOCOL) for c in chunks],
        "unpickle records": lambda: [pickle.loads(p) for p in pickled],
        "compress": lambda: [compress_payload(r) for r in raws],
    }
    print(f"{len(articles)} records of {corpus}; load average {os.getloadavg()[0]:.2f}", flush=True)
    bare = best_cpu(stages["bare"], args.repeat)
    print(f"{'stage':<17} {'CPU s':>8} {'x bare':>7} {'us/record':>10}")
    print(f"{'bare':<17} {bare:>8.3f} {1:>7.2f} {bare / len(articles) * 1e6:>10.0f}")
    for name, work in stages.items():
        if name == "bare":
            continue
        cpu = best_cpu(work, args.repeat)
        print(f"{name:<17} {cpu:>8.3f} {cpu / bare:>7.2f} {cpu / len(articles) * 1e6:>10.0f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        cpu, _ = store_all(f"sqlite:///{Path(tmp) / 'stages.sqlite'}", rows)
        print(f"{'store sqlite':<17} {cpu:>8.3f} {cpu / bare:>7.2f} {cpu / len(articles) * 1e6:>10.0f}")
    if args.postgres_url:
        with postgres_schema(args.postgres_url) as url:
            cpu, server = store_all(url, rows)
        print(
            f"{'store pg':<17} {cpu:>8.3f} {cpu / bare:>7.2f} {cpu / len(articles) * 1e6:>10.0f}"
            f"   + server {server:.3f} s ({server / bare:.2f} x bare)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
