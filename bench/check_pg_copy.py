"""Check that the COPY path stores what the plain path stores: the same corpus, two PostgreSQL schemas.

    python bench/check_pg_copy.py --records 2000 [--corpus PATH] [--postgres-url URL]

Loads the corpus with ``harvester.jobs.ingest.ingest_files`` twice, into two fresh schemas: once as the
store is, once with db.pg_copy's helpers patched in for db.store's insert helpers
(:func:`bench_store.copy_helpers`). Then compares every table but the run and file logs row by row, with
the timestamps the store takes from the clock (created_at, updated_at, changed_at, fetched_at, ...) masked;
ids are compared as they are. Prints the row counts and the tables that differ; exit status 1 when any does.
A check for the integration of issue 12's COPY path, before db/store.py calls it itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_parse import ensure_corpus  # noqa: E402 - after the path set-up above
from bench_store import Database, copy_helpers, store_corpus  # noqa: E402

SKIPPED = ("harvest_runs", "bulk_files")  # when and by whom: differ between any two loads


def load(corpus: Path, postgres_url: str, copy: bool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table after loading ``corpus`` into a fresh schema, clock values masked."""
    import sqlalchemy as sa

    from db.engine import open_database
    from db.models import metadata

    database = Database("postgresql", postgres_url, Path("."))
    try:
        if copy:
            with copy_helpers():
                store_corpus(corpus, database.url)
        else:
            store_corpus(corpus, database.url)
        engine = open_database(database.url)
        tables: dict[str, list[tuple[Any, ...]]] = {}
        try:
            with engine.connect() as conn:
                for name, table in metadata.tables.items():
                    if name in SKIPPED:
                        continue
                    rows = [
                        tuple("(time)" if isinstance(v, datetime) else v for v in row)
                        for row in conn.execute(sa.select(table))
                    ]
                    tables[name] = sorted(rows, key=repr)
        finally:
            engine.dispose()
        return tables
    finally:
        database.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--corpus", type=Path, default=None, help="default: bench/out/corpus-<records>.xml")
    parser.add_argument("--postgres-url", default=os.environ.get("HARVEST_TEST_POSTGRES_URL"))
    args = parser.parse_args(argv)
    if not args.postgres_url:
        parser.error("give --postgres-url or set HARVEST_TEST_POSTGRES_URL")
    corpus: Path = args.corpus or HERE / "out" / f"corpus-{args.records}.xml"
    fixtures = os.environ.get("HARVEST_FIXTURES")
    ensure_corpus(corpus, args.records, Path(fixtures) if fixtures else None)
    plain = load(corpus, args.postgres_url, copy=False)
    copied = load(corpus, args.postgres_url, copy=True)
    print("rows:", ", ".join(f"{name} {len(rows)}" for name, rows in plain.items() if rows))
    differing = [name for name in plain if plain[name] != copied[name]]
    print("tables differing:", ", ".join(differing) or "none")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
