"""How much memory `harvest ingest-icite` needs, and whether it grows with the snapshot (it must not).

Generates an iCite snapshot in iCite's two CSV formats (the metadata file, one row per PMID, and
open_citation_collection.csv, ``citing,referenced`` pairs) at full size (default 1,000,000 metadata rows
and 5,000,000 pairs) and at a tenth of it, and loads each into a fresh SQLite database holding the same
stored articles (PMIDs 1..--stored, so the rows and edges to keep are about the same at both sizes and
only the file grows). Each load runs in a fresh interpreter, which reports its wall time and peak RSS
(``ru_maxrss``); then the same files are loaded again with ``force`` (their checksum is already
recorded) and the rows written counted: they must be 0.

    .venv/bin/python bench/bench_icite.py                      # full size and a tenth
    .venv/bin/python bench/bench_icite.py --rows 100000 --pairs 500000   # a reduced run

Outputs (the generated files, the databases, results.json) go to bench/out/icite/.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = (
    "pmid,doi,title,authors,year,journal,is_research_article,citation_count,field_citation_rate,"
    "expected_citations_per_year,citations_per_year,relative_citation_ratio,nih_percentile,molecular_cellular,"
    "animal,human,apt,is_clinical,cited_by_clin,x_coord,y_coord,cited_by,references,provisional,last_modified"
)


def generate(out: Path, rows: int, pairs: int, seed: int = 15) -> tuple[Path, Path]:
    """The two snapshot files for ``rows`` PMIDs (1..rows) and ``pairs`` random citation pairs among them."""
    out.mkdir(parents=True, exist_ok=True)
    meta, occ = out / f"icite_metadata-{rows}.csv", out / f"open_citation_collection-{pairs}.csv"
    draw = random.Random(seed)
    if not meta.exists():
        with meta.open("w", encoding="utf-8") as handle:
            handle.write(HEADER + "\n")
            for pmid in range(1, rows + 1):
                cited_by = " ".join(str(draw.randint(1, rows)) for _ in range(draw.randint(0, 6)))
                refs = " ".join(str(draw.randint(1, rows)) for _ in range(draw.randint(0, 6)))
                rcr = round(draw.lognormvariate(0, 1), 2)
                handle.write(
                    f'{pmid},10.5555/icite.{pmid},"Generated article {pmid}","A Author, B Author",'
                    f"{2000 + pmid % 25},J Gen,True,{draw.randint(0, 300)},3.1,2.2,1.9,{rcr},"
                    f"{draw.uniform(0, 100):.1f},"
                    f"0.0,0.0,1.0,0.25,False,,0,1,{cited_by},{refs},False,11/01/2026 08:00:00\n"
                )
    if not occ.exists():
        with occ.open("w", encoding="utf-8") as handle:
            handle.write("citing,referenced\n")
            for _ in range(pairs):
                handle.write(f"{draw.randint(1, rows)},{draw.randint(1, rows)}\n")
    return meta, occ


def measure(db: Path, files: list[Path], stored: int) -> dict[str, Any]:
    """In this (fresh) process: a database with ``stored`` articles, then each file loaded twice."""
    import sqlalchemy as sa

    from db.engine import open_database
    from db.models import metadata
    from harvester.jobs.icite_ingest import ingest_icite_file

    db.unlink(missing_ok=True)
    engine = open_database(f"sqlite:///{db}")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(metadata.tables["articles"]),
            [{"pmid": str(p), "created_at": now, "updated_at": now} for p in range(1, stored + 1)],
        )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    first = [ingest_icite_file(path, engine=engine) for path in files]
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    again = [ingest_icite_file(path, engine=engine, force=True) for path in files]
    seconds_again = time.perf_counter() - started
    with engine.connect() as conn:
        counts = {
            name: conn.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar_one()  # noqa: S608 - fixed names
            for name in ("article_metrics", "citation_edges", "raw_payloads", "article_history", "bulk_files")
        }
    engine.dispose()
    return {
        "rows": sum(r.rows for r in first),
        "seconds": round(seconds, 1),
        "rss_before_mb": round(base, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_after_first_load_mb": round(peak, 1),
        "first_load": [r.as_dict() | {"writes": r.writes, "rejected": len(r.rejected)} for r in first],
        "second_load_writes": [r.writes for r in again],
        "second_load_seconds": round(seconds_again, 1),
        "tables": counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=5_000_000)
    parser.add_argument("--stored", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "icite")
    parser.add_argument("--measure", nargs="+", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.db, args.measure, args.stored)))
        return 0
    results = []
    for scale in (10, 1):  # a tenth first, then the full size
        rows, pairs = args.rows // scale, args.pairs // scale
        meta, occ = generate(args.out, rows, pairs)
        db = args.out / f"bench-{rows}.sqlite"
        command = [sys.executable, __file__, "--measure", str(meta), str(occ), "--db", str(db)]
        proc = subprocess.run(
            [*command, "--stored", str(args.stored)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        result = {"metadata_rows": rows, "pairs": pairs, **json.loads(proc.stdout.strip().splitlines()[-1])}
        results.append(result)
        first_peak, writes = result["peak_rss_after_first_load_mb"], sum(result["second_load_writes"])
        print(
            f"{rows:>9} metadata rows + {pairs:>9} pairs: {result['seconds']:>6.1f} s, peak RSS "
            f"{result['peak_rss_mb']:.1f} MB (after the first load {first_peak:.1f}); "
            f"second load wrote {writes} rows in {result['second_load_seconds']:.1f} s"
        )
    small, full = results
    ratio = full["peak_rss_mb"] / small["peak_rss_mb"]
    print(f"peak RSS full / tenth: {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.10 else 'NOT within'} 10%)")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
