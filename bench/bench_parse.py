"""Time parse_pubmed against a bare lxml walk and against Bio.Entrez, each run in a fresh subprocess.

    python bench/bench_parse.py --records 30000 --runs 3 [--skip-entrez] [--skip-store]

Measurements, each in its own interpreter so that its peak RSS is its own:

  (a) bare     lxml iterparse over every element (events=("end",)), clearing each one: the floor
  (b) parse    parse_pubmed over the same file, every record built
  (c) entrez   Bio.Entrez.read(validate=False) over the same file (Entrez.parse refuses PubmedArticleSet
               in Biopython 1.88: "The XML file does not represent a list")
  (d) store    parse + store into a fresh SQLite file as `harvest ingest FILE` does (harvester.jobs.ingest:
               records read and parsed on one thread, stored with db.store.store_articles on another)

Within each run the measurements follow one another, and the ratios b/a and c/b are taken per run, so a
busy machine slows both sides of a ratio alike. The corpus is built by make_corpus.py when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: make harvester/db importable

MEASUREMENTS = ("bare", "parse", "entrez", "store")


class Skipped(Exception):
    """A measurement that cannot run here; the message says why."""


# ---------------------------------------------------------------------------------------------- children


def measure_bare(corpus: Path) -> int:
    """(a) The floor: lxml builds and hands over every element, which is cleared at once."""
    from harvester.core.xmlsafe import iterparse_safe

    count = 0
    for _event, elem in iterparse_safe(str(corpus), events=("end",)):
        elem.clear()
        count += 1
    return count


def measure_parse(corpus: Path) -> int:
    """(b) parse_pubmed, every record built as frozen dataclasses."""
    from harvester.sources.pubmed_xml import parse_pubmed

    count = 0
    for _record in parse_pubmed(corpus):
        count += 1
    return count


def measure_entrez(corpus: Path) -> int:
    """(c) Bio.Entrez, with its DTD downloads refused (the corpus names a DTD Biopython ships)."""
    import Bio.Entrez.Parser
    from Bio import Entrez

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("benchmark is offline: Bio.Entrez wanted to download a DTD")

    Bio.Entrez.Parser.urlopen = refuse  # type: ignore[attr-defined]
    with corpus.open("rb") as handle:
        result = Entrez.read(handle, validate=False)  # type: ignore[no-untyped-call]
    return len(result["PubmedArticle"]) + len(result["PubmedBookArticle"])


def measure_store(corpus: Path) -> int:
    """(d) Parse and store into a fresh SQLite file the way `harvest ingest FILE` does it.

    harvester.jobs.ingest.ingest_files: a checksum pass, then a second process reads and parses the records
    (harvester.jobs.bulk_reader.ProcessReader, as for any file of 4 MB or more) while this one stores them
    with db.store.store_articles, in batches of 1,000. CPU time and peak RSS include that process.
    """
    from db.engine import open_database
    from harvester.core.settings import Settings
    from harvester.jobs.ingest import ingest_files

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        engine = open_database(url)
        try:
            report = ingest_files([corpus], settings=Settings(database_url=url), services=None, engine=engine)
        finally:
            engine.dispose()
    [applied] = report.files
    if applied.outcome != "applied":
        raise Skipped(f"ingest did not apply the corpus: {applied.outcome} ({applied.message})")
    return applied.created + applied.updated + applied.unchanged


CHILDREN: dict[str, Callable[[Path], int]] = {
    "bare": measure_bare,
    "parse": measure_parse,
    "entrez": measure_entrez,
    "store": measure_store,
}


def _peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak RSS of this process, or (RUSAGE_CHILDREN) of the largest child waited for."""
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports kilobytes


def _cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for ((d)'s reading process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_child(name: str, corpus: Path) -> int:
    """Run one measurement in this process and print its result as one JSON line."""
    # Imported before the baseline RSS is read, so that every child starts from the same footing.
    import lxml.etree  # noqa: F401

    import harvester.sources.pubmed_xml  # noqa: F401

    try:
        result = measure(name, partial(CHILDREN[name], corpus))
    except Skipped as exc:
        print(json.dumps({"name": name, "skipped": str(exc)}))
        return 0
    print(json.dumps(result))
    return 0


def measure(name: str, work: Callable[[], int]) -> dict[str, Any]:
    """Run ``work`` (which returns what it counted) and measure it: wall and CPU seconds (this process's
    and its waited-for children's), and peak RSS, this process's plus its largest child's (in (d) and in
    bench_ingest.py a second process reads and parses: an upper bound of the two together)."""
    baseline = _peak_rss_mb()
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    count = work()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    own, reader = _peak_rss_mb(), _peak_rss_mb(resource.RUSAGE_CHILDREN)
    return {
        "name": name,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "count": count,
        "rss_mb": own + reader,
        "rss_own_mb": own,
        "rss_reader_mb": reader,
        "base_mb": baseline,
    }


# ---------------------------------------------------------------------------------------------- parent


def spawn(name: str, corpus: Path) -> dict[str, Any]:
    """One measurement in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--corpus", str(corpus)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"name": name, "failed": tail}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def ensure_corpus(corpus: Path, records: int, fixtures: Path | None) -> None:
    if corpus.exists():
        return
    sys.path.insert(0, str(HERE))
    from make_corpus import write_corpus

    if fixtures is None:
        raise SystemExit(f"{corpus} does not exist: give --fixtures DIR or set HARVEST_FIXTURES to build it")
    sources = write_corpus(corpus, records, fixtures)
    print(f"built {corpus} ({records} records cycling {sources} recorded articles)")


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def report(results: list[dict[str, dict[str, Any]]], names: list[str], records: int) -> dict[str, Any]:
    """Print medians, per-run ratios and peak memory; return the same as a dict for the JSON file."""
    summary: dict[str, Any] = {"runs": results}
    print(
        f"\n{'measurement':<10} {'wall time per run (s)':<28} {'median s':>9} {'CPU s':>7} {'records/s':>10} "
        f"{'peak RSS MB':>12}"
    )
    for name in names:
        rows = [run[name] for run in results]
        done = [r for r in rows if "seconds" in r]
        if not done:
            why = rows[0].get("skipped") or rows[0].get("failed")
            print(f"{name:<10} skipped: {why}")
            summary[name] = {"skipped": why}
            continue
        seconds = [r["seconds"] for r in done]
        median = statistics.median(seconds)
        cpu = statistics.median(r["cpu_seconds"] for r in done)
        peak = max(r["rss_mb"] for r in done)
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:<10} {runs:<28} {median:>9.2f} {cpu:>7.2f} {records / median:>10.0f} {peak:>12.0f}")
        count = done[0]["count"]
        summary[name] = {"median_s": median, "median_cpu_s": cpu, "peak_rss_mb": peak, "count": count}

    def ratios(top: str, bottom: str, key: str = "seconds") -> list[float]:
        return [
            run[top][key] / run[bottom][key]
            for run in results
            if key in run.get(top, {}) and key in run.get(bottom, {})
        ]

    print()
    targets = (("parse", "bare", "<= 3.0"), ("entrez", "parse", ">= 4.0"), ("store", "bare", ""))
    for top, bottom, target in targets:
        values = ratios(top, bottom)
        if values:
            median = statistics.median(values)
            per_run = ", ".join(f"{v:.2f}" for v in values)
            goal = f"   (target {target})" if target else ""
            cpu_median = statistics.median(ratios(top, bottom, "cpu_seconds"))
            line = f"{top}/{bottom}: median {median:.2f}  per run [{per_run}]  on CPU time {cpu_median:.2f}"
            print(line + goal)
            summary[f"{top}/{bottom}"] = {"median": median, "per_run": values, "cpu_median": cpu_median}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=None, help="default: bench/out/corpus-<records>.xml")
    parser.add_argument(
        "--fixtures", type=Path, default=None, help="to build the corpus (default: $HARVEST_FIXTURES)"
    )
    parser.add_argument("--skip-entrez", action="store_true", help="leave out (c), the slowest and largest")
    parser.add_argument("--skip-store", action="store_true", help="leave out (d)")
    parser.add_argument("--measure", choices=MEASUREMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    corpus: Path = args.corpus or HERE / "out" / f"corpus-{args.records}.xml"
    if args.measure:
        return run_child(args.measure, corpus)

    env_fixtures = os.environ.get("HARVEST_FIXTURES")
    ensure_corpus(corpus, args.records, args.fixtures or (Path(env_fixtures) if env_fixtures else None))
    names = ["bare", "parse"]
    if not args.skip_entrez:
        names.append("entrez")
    if not args.skip_store:
        names.append("store")

    import Bio
    import lxml.etree

    print(
        f"corpus {corpus} ({corpus.stat().st_size / 1e6:.0f} MB), {args.runs} runs; Python "
        f"{platform.python_version()}, lxml {'.'.join(map(str, lxml.etree.LXML_VERSION))}, "
        f"libxml2 {'.'.join(map(str, lxml.etree.LIBXML_VERSION))}, biopython {Bio.__version__}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    results: list[dict[str, dict[str, Any]]] = []
    for run in range(1, args.runs + 1):
        row: dict[str, dict[str, Any]] = {}
        for name in names:
            row[name] = spawn(name, corpus)
            shown = row[name].get("seconds")
            extra = row[name].get("skipped") or row[name].get("failed") or ""
            print(f"run {run} {name:<7} {_fmt(shown, ' s'):>10} {extra}", flush=True)
        results.append(row)
    summary = report(results, names, args.records)
    out = corpus.with_suffix(".bench.json")
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
