"""Start-up time of the ``harvest`` command: ``harvest --help`` and ``harvest show ID`` on a small stored
database, against ``python -c pass`` (the interpreter alone), each the median of several runs.

    python bench/bench_startup.py [--runs 9]

The database is made in a temporary folder from tests/fixtures/efetch_pubmed_35350566.xml with
``harvest ingest`` (no network). Compiled bytecode is cached as after any install: in a temporary
PYTHONPYCACHEPREFIX, filled by a first untimed run of each command, whatever PYTHONDONTWRITEBYTECODE says
(with ``--no-pyc-cache`` the environment's setting stands; where it forbids writing bytecode, each run
compiles the project's own modules again, 0.1 s and more for ``harvest show``). The commands run
interleaved, so a busy moment hits each alike. Two figures per run:

- wall: time.perf_counter around subprocess.run, what a user waits;
- CPU: the user + system CPU seconds of the process (resource.getrusage(RUSAGE_CHILDREN), the difference
  across the run), which other work on a shared machine moves far less than the wall time: a loaded
  machine makes a process wait for a core, not do more work.

With ``--instructions`` each command also runs once under valgrind (callgrind), which counts the
instructions it executes: the same on a busy machine as on a quiet one (this machine's virtual CPUs
expose no counters to ``perf stat``), at some 50 times the run time.

The load averages before and after are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "fixtures" / "efetch_pubmed_35350566.xml"


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[:300]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """The instructions one run of ``argv`` executes, as callgrind counts them."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind: {done.stderr[-300:]}")
    return int(found.group(1))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per command (median reported)")
    parser.add_argument(
        "--no-pyc-cache", action="store_true", help="leave PYTHONDONTWRITEBYTECODE as the environment sets it"
    )
    parser.add_argument("--instructions", action="store_true", help="also count instructions with valgrind")
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind")
    harvest = str(Path(sys.executable).parent / "harvest")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")},
            "HOME": tmp,
            "HARVEST_DATABASE_URL": str(Path(tmp) / "bench.sqlite"),
            "HARVEST_RATE_DIR": "off",
        }
        if not args.no_pyc_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # never beside the sources
        subprocess.run([harvest, "-q", "ingest", str(SEED)], env=env, check=True)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "harvest --help": [harvest, "--help"],
            "harvest show 35350566": [harvest, "show", "35350566"],
        }
        for argv in commands.values():  # warm the page cache and the .pyc files
            measure(argv, env)
        load_before = load()
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so a busy moment hits every command alike
            for name, argv in commands.items():
                wall, cpu = measure(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
        counts = (
            {name: instructions(argv, env) for name, argv in commands.items()} if args.instructions else {}
        )
    cache = "as the environment says" if args.no_pyc_cache else "cached"
    print(
        f"{args.runs} runs each, bytecode {cache}; load average (1, 5, 15 min) {load_before} before,", end=""
    )
    print(f" {load()} after")
    base_wall = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    print(f"{'seconds':<24} {'wall median':>11} {'min':>6} {'max':>6} {'over python':>11}", end="")
    print(f"  {'CPU median':>10} {'over python':>11}")
    for name in commands:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        over_wall = "" if name == "python -c pass" else f"+{wall - base_wall:.3f}"
        over_cpu = "" if name == "python -c pass" else f"+{cpu - base_cpu:.3f}"
        print(
            f"{name:<24} {wall:>11.3f} {min(walls[name]):>6.3f} {max(walls[name]):>6.3f} {over_wall:>11}"
            f"  {cpu:>10.3f} {over_cpu:>11}"
        )
    for name, count in counts.items():
        over = (
            "" if name == "python -c pass" else f" (+{(count - counts['python -c pass']) / 1e6:,.0f} million)"
        )
        print(f"{name:<24} {count / 1e6:>11,.0f} million instructions{over}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
