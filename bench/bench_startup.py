"""Start-up time of the ``harvest`` command: ``harvest --help`` and ``harvest show ID`` on a small stored
database, against ``python -c pass`` (the interpreter alone), each the median of several runs.

    python bench/bench_startup.py [--runs 9]

The database is made in a temporary folder from tests/fixtures/efetch_pubmed_35350566.xml with
``harvest ingest`` (no network). Wall times by time.perf_counter around subprocess.run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "efetch_pubmed_35350566.xml"


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per command (median reported)")
    args = parser.parse_args()
    harvest = str(Path(sys.executable).parent / "harvest")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")},
            "HOME": tmp,
            "HARVEST_DATABASE_URL": str(Path(tmp) / "bench.sqlite"),
            "HARVEST_RATE_DIR": "off",
        }
        subprocess.run([harvest, "-q", "ingest", str(SEED)], env=env, check=True)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "harvest --help": [harvest, "--help"],
            "harvest show 35350566": [harvest, "show", "35350566"],
        }
        for argv in commands.values():  # warm the page cache and the .pyc files
            wall(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so a busy moment hits every command alike
            for name, argv in commands.items():
                times[name].append(wall(argv, env))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.runs} runs each, load average {load:.2f}")
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        extra = "" if name == "python -c pass" else f"  (+{median - base:.3f} s over the interpreter)"
        print(f"{name:<24} median {median:.3f} s  min {min(values):.3f}  max {max(values):.3f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
