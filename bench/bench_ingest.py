"""Time ``harvest ingest`` against a bare lxml walk of the same file, and its peak memory at two sizes.

    python bench/bench_ingest.py --records 30000 --memory-records 120000 --runs 3 [--batch-size N]

Measurements, each in a fresh interpreter so that its peak RSS is its own:

  bare     the bare lxml iterparse walk of bench_parse.py (the same function), over the 30,000-record file
  ingest   harvester.jobs.ingest.ingest_files over the same file into a fresh SQLite database: checksum pass,
           parse, store in batches, record the file; the work of ``harvest ingest FILE`` minus the CLI
  ingest-big  the same over the 120,000-record file, for peak memory only
  ingest-thread  ``ingest`` with the file read and parsed in a thread of the storing process instead of a
           process of its own (what ingest did before, and still does for files under 4 MB): the gain
           of the reading process, measured in the same run

A file this large is read and parsed by a second process (harvester.jobs.bulk_reader.ProcessReader), so CPU
time is this process's plus its children's, and peak memory is this process's peak plus the reading
process's peak (an upper bound: the two peaks need not coincide); both parts are also reported.

Within each run the measurements follow one another; the ratio ingest/bare and the memory ratio
ingest-big/ingest are taken per run, so a busy machine slows both sides of a ratio alike. The corpora are
built by make_corpus.py when missing (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: make harvester/db importable
sys.path.insert(0, str(HERE))  # and bench_parse, for the one definition of the bare walk

TIME_TARGET = 6.0  # ingest at most 6x the bare walk
MEMORY_TARGET = 0.10  # peak RSS at 4x the records within 10 %


def prepare_ingest(
    corpus: Path, batch_size: int, tmp: Path, read_in_process: bool | None = None
) -> Callable[[], int]:
    """A fresh, migrated SQLite database (made before the clock starts, as it exists before a nightly
    ``harvest ingest``) and the ingest of one file into it, which returns the records stored."""
    from db.engine import open_database
    from harvester.core.settings import Settings
    from harvester.jobs.ingest import ingest_files

    url = f"sqlite:///{tmp / 'bench.sqlite'}"
    open_database(url).dispose()

    def ingest() -> int:
        engine = open_database(url)
        try:
            report = ingest_files(
                [corpus],
                settings=Settings(database_url=url),
                services=None,
                engine=engine,
                batch_size=batch_size,
                read_in_process=read_in_process,
            )
        finally:
            engine.dispose()
        [file] = report.files
        if file.outcome != "applied":
            raise SystemExit(f"ingest did not apply {corpus}: {file.outcome}: {file.message}")
        return file.records

    return ingest


def run_child(name: str, corpus: Path, batch_size: int) -> int:
    """Run one measurement in this process and print its result as one JSON line."""
    # Everything a measurement imports is imported before the clock starts and the baseline RSS is read.
    import lxml.etree  # noqa: F401
    from bench_parse import measure, measure_bare

    import db.bulk
    import db.store  # noqa: F401
    import harvester.jobs.ingest
    import harvester.sources.pubmed_xml  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = (
            partial(measure_bare, corpus)
            if name == "bare"
            else prepare_ingest(corpus, batch_size, Path(tmp), False if name == "ingest-thread" else None)
        )
        result = measure(name, work)
    print(json.dumps(result))
    return 0


def spawn(name: str, corpus: Path, batch_size: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--corpus", str(corpus)]
    proc = subprocess.run(
        [*command, "--batch-size", str(batch_size)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"name": name, "failed": tail}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def ensure_corpus(corpus: Path, records: int) -> None:
    from bench_parse import ensure_corpus as build

    env = os.environ.get("HARVEST_FIXTURES")
    build(corpus, records, Path(env) if env else None)


def _ratios(results: list[dict[str, dict[str, Any]]], top: str, bottom: str, key: str) -> list[float]:
    return [
        run[top][key] / run[bottom][key]
        for run in results
        if key in run.get(top, {}) and key in run.get(bottom, {})
    ]


def report(
    results: list[dict[str, dict[str, Any]]], names: list[str], records: dict[str, int]
) -> dict[str, Any]:
    """Print medians, per-run ratios and peak memory; return the same as a dict for the JSON file."""
    summary: dict[str, Any] = {"runs": results}
    print(
        f"\n{'measurement':<11} {'wall s per run':<26} {'median s':>9} {'CPU s':>7} {'records/s':>10} "
        f"{'peak RSS MB':>24}"
    )
    for name in names:
        done = [run[name] for run in results if "seconds" in run[name]]
        if not done:
            print(f"{name:<11} failed: {results[0][name].get('failed')}")
            summary[name] = {"failed": results[0][name].get("failed")}
            continue
        median = statistics.median(r["seconds"] for r in done)
        cpu = statistics.median(r["cpu_seconds"] for r in done)
        rss = [r["rss_mb"] for r in done]
        runs = ", ".join(f"{r['seconds']:.2f}" for r in done)
        rss_runs = ", ".join(f"{v:.0f}" for v in rss)
        rate = records[name] / median
        print(f"{name:<11} {runs:<26} {median:>9.2f} {cpu:>7.2f} {rate:>10.0f} {rss_runs:>24}")
        summary[name] = {
            "median_s": median,
            "median_cpu_s": cpu,
            "rss_mb": rss,
            "median_rss_mb": statistics.median(rss),
            "count": done[0]["count"],
        }
    for name in names:
        parts = [
            (r["rss_own_mb"], r["rss_reader_mb"]) for r in (run[name] for run in results) if "rss_own_mb" in r
        ]
        if any(reader for _own, reader in parts):
            shown = ", ".join(f"{own:.0f} + {reader:.0f}" for own, reader in parts)
            print(f"{name:<11} peak RSS, storing process + reading process: {shown} MB")
    print()
    time_ratios = _ratios(results, "ingest", "bare", "seconds")
    if time_ratios:
        cpu_ratios = _ratios(results, "ingest", "bare", "cpu_seconds")
        median = statistics.median(time_ratios)
        cpu_median = statistics.median(cpu_ratios)
        print(
            f"ingest/bare wall time: median {median:.2f}  "
            f"per run [{', '.join(f'{v:.2f}' for v in time_ratios)}]"
            f"   (target <= {TIME_TARGET:.0f}: {'met' if median <= TIME_TARGET else 'MISSED'})"
        )
        # Issue 12's target is the CPU ratio: both processes' CPU time against the bare walk's.
        print(
            f"ingest/bare CPU time:  median {cpu_median:.2f}  "
            f"per run [{', '.join(f'{v:.2f}' for v in cpu_ratios)}]"
            f"   (target <= {TIME_TARGET:.0f}: {'met' if cpu_median <= TIME_TARGET else 'MISSED'})"
        )
        summary["ingest/bare"] = {
            "median": median,
            "per_run": time_ratios,
            "cpu_median": cpu_median,
            "cpu_per_run": cpu_ratios,
        }
    gain = _ratios(results, "ingest-thread", "ingest", "seconds")
    if gain:
        thread = _ratios(results, "ingest-thread", "bare", "seconds")
        print(
            f"ingest-thread/ingest wall time (the reading process's gain): median "
            f"{statistics.median(gain):.2f}  per run [{', '.join(f'{v:.2f}' for v in gain)}]; "
            f"ingest-thread/bare median {statistics.median(thread):.2f}"
        )
        summary["ingest-thread/ingest"] = {"median": statistics.median(gain), "per_run": gain}
        summary["ingest-thread/bare"] = {"median": statistics.median(thread), "per_run": thread}
    memory = _ratios(results, "ingest-big", "ingest", "rss_mb")
    if memory:
        median = statistics.median(memory)
        verdict = "met" if abs(median - 1) <= MEMORY_TARGET else "MISSED"
        print(
            f"peak RSS {records['ingest-big']:,} / {records['ingest']:,} records: median {median:.3f}  "
            f"per run [{', '.join(f'{v:.3f}' for v in memory)}]   "
            f"(target within +-{MEMORY_TARGET:.0%}: {verdict})"
        )
        summary["rss big/small"] = {"median": median, "per_run": memory}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--memory-records", type=int, default=120_000, help="0 leaves the memory run out")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: harvester.jobs.ingest.INGEST_BATCH"
    )
    parser.add_argument("--corpus", type=Path, default=None, help="default: bench/out/corpus-<records>.xml")
    parser.add_argument(
        "--only",
        choices=("time", "memory"),
        default=None,
        help="time: bare and ingest only; memory: ingest at both sizes only (peak RSS does not depend on "
        "load)",
    )
    parser.add_argument(
        "--no-thread",
        action="store_true",
        help="leave out ingest-thread (the same ingest, read in a thread: the reading process's gain)",
    )
    parser.add_argument(
        "--measure", choices=("bare", "ingest", "ingest-thread", "ingest-big"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.batch_size is None:
        from harvester.jobs.ingest import INGEST_BATCH

        args.batch_size = INGEST_BATCH

    if args.measure:
        return run_child(args.measure, args.corpus, args.batch_size)

    corpus: Path = args.corpus or HERE / "out" / f"corpus-{args.records}.xml"
    ensure_corpus(corpus, args.records)
    corpora = {"bare": corpus, "ingest": corpus}
    records = {"bare": args.records, "ingest": args.records}
    if args.only == "memory":
        del corpora["bare"], records["bare"]
    elif not args.no_thread:
        corpora["ingest-thread"] = corpus
        records["ingest-thread"] = args.records
    if args.memory_records and args.only != "time":
        big = HERE / "out" / f"corpus-{args.memory_records}.xml"
        ensure_corpus(big, args.memory_records)
        corpora["ingest-big"] = big
        records["ingest-big"] = args.memory_records
    names = list(corpora)

    import lxml.etree

    print(
        f"corpus {corpus} ({corpus.stat().st_size / 1e6:.0f} MB), {args.runs} runs, "
        f"batch size {args.batch_size}; "
        f"Python {platform.python_version()}, lxml {'.'.join(map(str, lxml.etree.LXML_VERSION))}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    results: list[dict[str, dict[str, Any]]] = []
    for run in range(1, args.runs + 1):
        row: dict[str, dict[str, Any]] = {}
        for name in names:
            row[name] = spawn(name, corpora[name], args.batch_size)
            shown = row[name].get("seconds")
            extra = row[name].get("failed") or f"peak RSS {row[name].get('rss_mb', 0):.0f} MB"
            print(
                f"run {run} {name:<11} {'-' if shown is None else f'{shown:.2f} s':>10}  {extra}", flush=True
            )
        results.append(row)
    summary = report(results, names, records)
    summary["batch_size"] = args.batch_size
    summary["load_average_end"] = os.getloadavg()[0]
    out = corpus.with_suffix(f".ingest{'-' + args.only if args.only else ''}.json")
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nresults written to {out}; load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
