"""The command line's contract (issue 14), through the installed ``harvest`` console script: exit codes,
what is on stdout and stderr, and which files are left behind."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester.cli import EXIT_MEANINGS, app
from harvester.core.errors import ExitCode
from tests.standin import StandIn

SEED = Path(__file__).parent / "fixtures" / "efetch_pubmed_35350566.xml"
SCRIPT = Path(sys.executable).parent / "harvest"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment with its own HOME, config-free, and the database in tmp."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HARVEST_") and k not in {"NCBI_API_KEY", "CROSSREF_PLUS_TOKEN", "XDG_DATA_HOME"}
    }
    clean.update(
        HOME=str(tmp_path / "home"),
        HARVEST_EMAIL="tests@example.org",
        HARVEST_RATE_DIR=str(tmp_path / "rate"),
        HARVEST_DATABASE_URL=str(tmp_path / "db" / "harvest.sqlite"),
    )
    return clean


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` pointed at the stand-in server, with the seed article already stored."""
    with StandIn([SEED]) as server:
        env.update(server.env())
        done = harvest(env, "pmid", "--no-enrich", "35350566")
        assert done.returncode == 0, done.stderr
        yield env


def harvest(
    env: dict[str, str], *args: str, stdin: str | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(SCRIPT), *args],
        env=env,
        input=stdin,
        capture_output="stdout" not in kwargs,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def one_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("harvest: error: "), stderr
    assert "Traceback" not in stderr and "Error:" not in lines[0].split("harvest: error: ", 1)[1]
    return lines[0]


def test_version_alone(env: dict[str, str]) -> None:
    done = harvest(env, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pubmed-harvester ")
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["pmid", "--bogus"], "no such option: --bogus (see 'harvest pmid --help')"),
        (["nosuchcommand"], "no such command 'nosuchcommand'"),
        (["runs", "--limit", "x"], "invalid value for '--limit'"),
        (["ingest"], "missing argument 'file|dir'"),
    ],
)
def test_an_argument_error_is_one_line_exit_2(env: dict[str, str], argv: list[str], needle: str) -> None:
    done = harvest(env, *argv)
    assert done.returncode == ExitCode.USAGE
    assert needle in one_error(done.stderr).lower()
    assert done.stdout == ""


def test_a_config_error_names_the_key_and_the_file(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[ncbi]\nefetch_batch_size = "200"\n')
    done = harvest(env, "--config", str(config), "show", "1")
    line = one_error(done.stderr)
    assert done.returncode == ExitCode.USAGE
    assert str(config) in line and "ncbi.efetch_batch_size" in line and "a whole number" in line
    assert not re.search(r"\b(int|str)\b", line), line


def test_unsupported_database_hints_postgresql(env: dict[str, str]) -> None:
    done = harvest(env, "--db", "postgres://u@h/db", "show", "1")
    assert done.returncode == ExitCode.USAGE
    assert "postgresql://" in one_error(done.stderr)


@pytest.mark.parametrize(
    "argv",
    [["show", "35350566"], ["export"], ["history", "35350566"], ["conflicts"], ["runs"], ["db", "current"]],
    ids=lambda a: " ".join(a),
)
def test_a_read_command_on_a_missing_database_creates_nothing(
    env: dict[str, str], tmp_path: Path, argv: list[str]
) -> None:
    missing = tmp_path / "typo" / "deeper" / "harvest.sqlite"
    done = harvest(env, "--db", str(missing), *argv)
    assert done.returncode == ExitCode.STORAGE
    assert f"no database at {missing}" in one_error(done.stderr)
    assert not (tmp_path / "typo").exists()
    assert done.stdout == ""


def test_quiet_prints_nothing_on_success_and_errors_still(served: dict[str, str], tmp_path: Path) -> None:
    done = harvest(served, "-q", "pmid", "--no-enrich", "35350566")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = harvest(served, "-q", "db", "upgrade")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = harvest(served, "-q", "export", "-o", str(tmp_path / "out.jsonl"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    bad = harvest(served, "-q", "pmid", "abc")
    assert bad.returncode == ExitCode.USAGE and bad.stdout == ""
    assert "invalid PMID 'abc'" in one_error(bad.stderr)


def test_invalid_and_good_ids_mixed_complain_once(served: dict[str, str]) -> None:
    done = harvest(served, "pmid", "--no-enrich", "35350566", "abc")
    assert done.returncode == ExitCode.USAGE
    assert "invalid PMID 'abc'" in one_error(done.stderr)


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["pmid", "--no-enrich", "35350566"], "unchanged"),
        (["show", "35350566"], "articles"),
        (["db", "current"], "current"),
        (["db", "upgrade"], "revision"),
        (["export", "-o", "{tmp}/e.jsonl"], "exported"),
        (["enrich", "--stale-days", "100000"], "requested"),
        (["runs"], None),
        (["history", "35350566"], None),
        (["conflicts"], None),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else str(a),
)
def test_every_command_json_is_one_object(
    served: dict[str, str], tmp_path: Path, argv: list[str], key: str | None
) -> None:
    """runs, history and conflicts are other branches' (issue 14b, 13a); here they only must parse."""
    done = harvest(served, "--json", *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    if key is not None:
        assert isinstance(parsed, dict) and key in parsed, done.stdout
        assert done.stdout.count("\n") == 1


def test_json_show_is_an_object_with_the_documents(served: dict[str, str]) -> None:
    done = harvest(served, "--json", "show", "35350566", "99999999")
    assert done.returncode == ExitCode.NOT_FOUND
    parsed = json.loads(done.stdout)
    assert [d["pmid"] for d in parsed["articles"]] == ["35350566"]
    assert parsed["not_stored"] == ["99999999"]
    assert "not stored: 99999999" in one_error(done.stderr)


def test_json_export_to_stdout_is_refused(served: dict[str, str]) -> None:
    done = harvest(served, "--json", "export")
    assert done.returncode == ExitCode.USAGE and done.stdout == ""
    assert "-o PATH" in one_error(done.stderr)


def test_export_through_a_symlink_writes_its_target(served: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    done = harvest(served, "export", "-o", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text().splitlines()[0])["pmid"] == "35350566"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left


def test_export_into_a_fifo_streams_to_its_reader(served: dict[str, str], tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    done = harvest(served, "export", "-o", str(fifo))
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not replaced by a file
    assert json.loads(got[0].splitlines()[0])["pmid"] == "35350566"


def test_export_to_dash_and_dev_stdout_is_stdout(served: dict[str, str], tmp_path: Path) -> None:
    for path in ["-", "/dev/stdout"]:
        out = tmp_path / "captured.jsonl"
        with out.open("w") as handle:
            done = harvest(served, "export", "-o", path, stdout=handle, stderr=subprocess.PIPE)
        assert done.returncode == 0, done.stderr
        assert json.loads(out.read_text().splitlines()[0])["pmid"] == "35350566"
    assert not Path("-").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_export_file_mode_follows_the_umask(served: dict[str, str], tmp_path: Path, umask: int) -> None:
    out = tmp_path / f"mode{umask:o}.jsonl"
    done = harvest(served, "export", "-o", str(out), preexec_fn=lambda: os.umask(umask))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_on_stdout_or_an_export_is_exit_9(served: dict[str, str]) -> None:
    with open("/dev/full", "w") as full:
        done = harvest(served, "show", "35350566", stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == ExitCode.OUTPUT_FAILED
    assert "No space left on device" in one_error(done.stderr)
    done = harvest(served, "export", "-o", "/dev/full")
    assert done.returncode == ExitCode.OUTPUT_FAILED
    assert "No space left on device" in one_error(done.stderr)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_downgrade_is_refused_without_yes_off_a_terminal(served: dict[str, str]) -> None:
    done = harvest(served, "db", "downgrade", "base", stdin="")
    assert done.returncode == ExitCode.USAGE
    assert "--yes" in one_error(done.stderr)
    assert json.loads(harvest(served, "--json", "db", "current").stdout)["current"] is not None
    done = harvest(served, "--json", "db", "downgrade", "base", "--yes")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["revision"] is None


def test_a_bad_revision_is_a_usage_error(served: dict[str, str]) -> None:
    done = harvest(served, "db", "upgrade", "nope")
    assert done.returncode == ExitCode.USAGE
    assert "'nope'" in one_error(done.stderr)


def test_log_file_gets_one_run_line_with_summary_and_exit_code(
    served: dict[str, str], tmp_path: Path
) -> None:
    log_file = tmp_path / "harvest.log"
    served["HARVEST_LOG_FILE"] = str(log_file)
    assert harvest(served, "-q", "pmid", "--no-enrich", "35350566").returncode == 0
    assert harvest(served, "-q", "show", "1").returncode == ExitCode.NOT_FOUND
    runs = [line for line in log_file.read_text().splitlines() if "run: harvest" in line]
    assert len(runs) == 2, log_file.read_text()
    assert "run: harvest -q pmid --no-enrich 35350566: exit 0; requested 1" in runs[0]
    assert "run: harvest -q show 1: exit 3; shown 0, not stored 1" in runs[1]


def test_verbose_shows_no_alembic_lines(env: dict[str, str], tmp_path: Path) -> None:
    done = harvest(env, "-v", "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "alembic" not in done.stderr


def test_help_lists_every_exit_code_and_the_readme_agrees() -> None:
    assert set(EXIT_MEANINGS) == set(ExitCode)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n## ", 1)[0]
    for code in ExitCode:
        assert f"\n| {int(code)} |" in table, code


def _commands() -> list[list[str]]:
    from typer.main import get_command

    root = get_command(app)
    found: list[list[str]] = [[]]
    for name, command in getattr(root, "commands", {}).items():
        found.append([name])
        found.extend([name, sub] for sub in getattr(command, "commands", {}))
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "harvest")
def test_every_help_teaches(env: dict[str, str], command: list[str]) -> None:
    """A whole one-line summary, an example, no Python type names."""
    done = harvest(env, *command, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for python in ("<list", "<str>", "<int>", "<path>", "{ids}", "[str]", "<bool>"):
        assert python not in text, (python, text)
    assert "Example" in text, text
    if not command:
        assert "Global options go before the command" in text
        assert "harvest.sqlite" in text
        summaries = text.split("Commands:", 1)[1]
        assert "..." not in summaries and "(e.g." not in summaries, summaries


def test_importing_the_cli_imports_no_heavy_library() -> None:
    code = (
        "import sys, harvester.cli; "
        "heavy = ('sqlalchemy', 'requests', 'lxml', 'alembic', 'rich', 'tenacity'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout
