"""The chaos run at any size: harvest and enrich N generated PMIDs with a share of the answers faulted.

    python bench/bench_chaos.py --records 5000 [--rate 0.10] [--seed 43] [--work DIR]

Two stand-ins serve the same generated corpus (see tests/test_chaos.py); one faults ``--rate`` of its
answers across every mode of ``tests.standin.chaos_modes``. A fault-free harvest (a child process) and the
chaos harvest (in this process) run side by side into two fresh databases, which are then compared table
by table. Prints the figures as a markdown table and writes them as JSON to bench/out/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make tests importable
import tests.test_chaos as chaos

OUT = Path(__file__).parent / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=chaos.CHAOS_RATE, help="share of answers faulted")
    parser.add_argument("--seed", type=int, default=chaos.CHAOS_SEED)
    parser.add_argument("--work", type=Path, default=None, help="where the SQLite files and id lists go")
    args = parser.parse_args(argv)
    chaos.CHAOS_RATE = args.rate
    chaos.CHAOS_SEED = args.seed

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    chaos_db, reference_db = work / "chaos.sqlite", work / "reference.sqlite"
    for path in (chaos_db, reference_db):
        path.unlink(missing_ok=True)
    started = time.monotonic()
    corpus = chaos.make_corpus(args.records)
    figures = chaos.chaos_run(corpus, f"sqlite:///{chaos_db}", f"sqlite:///{reference_db}", work)
    elapsed = time.monotonic() - started
    figures.extra["wall time, both runs side by side (s)"] = round(elapsed, 1)
    print(f"chaos run: {args.records} PMIDs, {args.rate:.0%} of answers faulted, seed {args.seed}\n")
    print(figures.table())
    if figures.lost or figures.differing_tables or figures.duplicated:
        print(f"\nlost: {figures.lost[:20]}\ndiffering tables: {figures.differing_tables}")
    OUT.mkdir(exist_ok=True)
    out = OUT / f"chaos-{args.records}-seed{args.seed}.json"
    out.write_text(
        json.dumps(
            {
                "records": args.records,
                "rate": args.rate,
                "seed": args.seed,
                "articles": figures.articles,
                "requests": figures.requests,
                "faults": figures.faults,
                "retries": figures.retries,
                "violations": figures.violations,
                "lost": figures.lost,
                "duplicated": figures.duplicated,
                "differing_tables": figures.differing_tables,
                "report_failed": figures.report_failed,
                "exit_code": figures.exit_code,
                "extra": figures.extra,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwritten to {out}")
    ok = not (figures.lost or figures.differing_tables or figures.duplicated or figures.violations)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
