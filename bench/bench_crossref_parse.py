"""How long parse_crossref_response takes on a Crossref work with many authors (the figure a timed test
used to assert: under 1 s for 1,000 authors).

    python bench/bench_crossref_parse.py [--authors 1000] [--runs 5]

The work is the recorded-format fonc work of tests/fixtures with its author list grown to ``--authors``
(tests.test_crossref.thousand_author_work). Prints the median, best and worst of the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make tests importable
from enrich.crossref_json import parse_crossref_response
from tests.test_crossref import FONC, local_bytes, thousand_author_work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    envelope = json.loads(local_bytes(FONC))
    envelope["message"] = thousand_author_work(envelope["message"], count=args.authors)
    body = json.dumps(envelope).encode()
    times: list[float] = []
    for _ in range(args.runs):
        started = time.perf_counter()
        (work,) = parse_crossref_response(body)
        times.append(time.perf_counter() - started)
        assert len(work.authors) == args.authors
    print(
        f"parse_crossref_response, {args.authors} authors, {len(body):,} bytes: median "
        f"{statistics.median(times) * 1000:.1f} ms (best {min(times) * 1000:.1f}, worst "
        f"{max(times) * 1000:.1f}) over {args.runs} runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
