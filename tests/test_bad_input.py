"""The bad-input catalogue (issue 6): every way a user or the machine can hand the CLI something wrong.

Each row runs the real ``harvest`` CLI in-process against the stand-in, on a database that already
holds the seed article, and checks four things: the documented exit code; one line on stderr naming the
problem (never a traceback; rows whose outcome is a per-id report check that every stderr line is a
one-line record); the database unchanged (every table but the run log compared row for row) or, where
the row stores something on purpose, consistent (whole batches only, every run closed); and a needle
that says the message is about the right thing. Some rows repeat a case tested elsewhere
(tests/test_cli.py): the catalogue is the documented list, so it keeps them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

import harvester.jobs.by_id
from db.store import store_articles_isolated
from harvester.cli import run
from harvester.core.errors import ExitCode
from tests import test_cli
from tests.db_helpers import BUDGET_TABLES, POSTGRES_ENV, database_params, fresh_database_url, snapshot
from tests.standin import StandIn, Status

# The end-to-end fixtures of the CLI tests (an isolated HOME, the stand-in with the seed and 12 clones).
home, standin = test_cli.home, test_cli.standin
POSTGRES_URL = os.environ.get(POSTGRES_ENV)  # read before ``home`` clears every HARVEST_* variable

SEED_PMID = "35350566"
UNCHANGED, CONSISTENT = "unchanged", "consistent"
ONE_LINE, REPORT = "one line", "report"
REPORT_PREFIXES = ("harvest: error:", "WARNING ")  # retry warnings are log lines
FAST_HTTP = "[http]\nmax_attempts = 2\nbackoff_initial = 0.01\nbackoff_max = 0.02\ntimeout = 2\n"


@dataclass
class Context:
    """What a row's set-up may use: where files go, the database, the stand-in, and monkeypatch."""

    home: Path
    url: str
    dialect: str
    standin: StandIn
    monkeypatch: pytest.MonkeyPatch

    def file(self, name: str, content: str | bytes) -> str:
        path = self.home / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def config(self, text: str) -> str:
        return self.file("bad.toml", text)


Setup = Callable[[Context], list[str]]


@dataclass(frozen=True)
class Case:
    """One row: the arguments (or a set-up returning them), the outcome, and what the database must be."""

    name: str
    argv: list[str] | Setup
    exit_code: ExitCode
    needle: str
    database: str = UNCHANGED
    stderr: str = ONE_LINE
    sqlite_only: bool = False  # a file case: PostgreSQL has no database file
    stored_after: list[str] = field(default_factory=list)  # PMIDs the row stores on purpose


def _with_config(text: str, *argv: str) -> Setup:
    return lambda ctx: ["--config", ctx.config(text), *argv]


def _id_file(content: str | bytes, kind: str = "pmid") -> Setup:
    return lambda ctx: [kind, "--no-enrich", "--from", ctx.file("ids.txt", content)]


def _env(name: str, value: str, *argv: str) -> Setup:
    def setup(ctx: Context) -> list[str]:
        ctx.monkeypatch.setenv(name, value)
        return list(argv)

    return setup


def _read_only_sqlite(ctx: Context) -> list[str]:
    path = make_url(ctx.url).database
    return ["--db", f"sqlite:///file:{path}?mode=ro&uri=true", "pmid", "--no-enrich", "900001"]


def _corrupt_sqlite(ctx: Context) -> list[str]:
    path = Path(str(make_url(ctx.url).database))
    path.write_bytes(b"this is not a SQLite database\n" * 200)
    for journal in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        journal.unlink(missing_ok=True)  # or SQLite would still read every page from the WAL
    return ["pmid", "--no-enrich", "900001"]


def _newer_schema(ctx: Context) -> list[str]:
    engine = sa.create_engine(ctx.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE alembic_version SET version_num = :rev"), {"rev": "ffff9999_from_the_future"}
        )
    engine.dispose()
    return ["pmid", "--no-enrich", "900001"]


def _unreachable_postgres(ctx: Context) -> list[str]:
    url = "postgresql+psycopg://harvest:FaKe-Pass@127.0.0.1:9/harvest"
    return ["--db", url, "pmid", "--no-enrich", "900001"]


def _disk_full(ctx: Context) -> list[str]:
    """Every INSERT INTO articles (PostgreSQL: COPY) fails as a full disk fails it: the first batch is refused
    whole."""
    import db.engine

    real = db.engine.open_database

    def open_failing(url: str, **kwargs: Any) -> Engine:
        engine = real(url, **kwargs)

        def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith(("INSERT INTO ARTICLES", 'COPY "ARTICLES"')):
                raise engine.dialect.loaded_dbapi.OperationalError("database or disk is full")

        sa.event.listen(engine, "before_cursor_execute", fail)  # the CLI's engine dies with the run
        return engine

    ctx.monkeypatch.setattr(db.engine, "open_database", open_failing)
    return ["pmid", "--no-enrich", "900001", "900002"]


def _ctrl_c_mid_harvest(ctx: Context) -> list[str]:
    """Ctrl-C arrives while the second batch is being stored: the first stays, the second never starts."""
    calls = {"n": 0}

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return store_articles_isolated(*args, **kwargs)

    ctx.monkeypatch.setattr(harvester.jobs.by_id, "store_articles_isolated", interrupted)
    config = ctx.config("[ncbi]\nefetch_batch_size = 2\n")
    return ["--config", config, "pmid", "--no-enrich", "900001", "900002", "900003", "900004"]


def _upstream_down(ctx: Context) -> list[str]:
    ctx.standin.fail_always("efetch.fcgi", Status(503, b"Service Unavailable"))
    return ["--config", ctx.config(FAST_HTTP), "pmid", "--no-enrich", "900001"]


LONG_DOI = "10.1000/" + "x" * 600
CASES = [
    # ---- identifiers of each kind: malformed, unknown, odd
    Case("pmid letters", ["pmid", "abc"], ExitCode.USAGE, "invalid PMID 'abc'"),
    Case("pmid zero", ["pmid", "0"], ExitCode.USAGE, "invalid PMID '0'"),
    Case("pmid too long", ["pmid", "99999999999999999999"], ExitCode.USAGE, "at most 10 digits"),
    Case("pmid with a letter inside", ["pmid", "3535a0566"], ExitCode.USAGE, "invalid PMID"),
    Case("pmid negative", ["pmid", "--", "-5"], ExitCode.USAGE, "invalid PMID '-5'"),
    Case(
        "pmid negative, read as an option",
        ["pmid", "-5"],
        ExitCode.USAGE,
        "no such option: -5 (see 'harvest pmid --help')",
    ),
    Case(
        "pmid unknown upstream",
        ["pmid", "--no-enrich", "99999999"],
        ExitCode.NOT_FOUND,
        "not found: 99999999",
    ),
    Case(
        "pmid valid and malformed mixed",
        ["pmid", "--no-enrich", "900001", "abc"],
        ExitCode.USAGE,
        "invalid PMID 'abc'",
        database=CONSISTENT,
        stderr=REPORT,
        stored_after=["900001"],
    ),
    Case("pmcid letters", ["pmcid", "PMCX1"], ExitCode.USAGE, "invalid PMCID"),
    Case("pmcid prefix only", ["pmcid", "PMC"], ExitCode.USAGE, "invalid PMCID 'PMC'"),
    Case("pmcid unknown upstream", ["pmcid", "--no-enrich", "PMC99999999"], ExitCode.NOT_FOUND, "not found:"),
    Case("doi without prefix", ["doi", "not-a-doi"], ExitCode.USAGE, "invalid DOI 'not-a-doi'"),
    # Spaces, tabs and commas separate ids (as EDirect reads them): "a b" is two ids, each a bad DOI.
    Case("doi with a space", ["doi", "a b"], ExitCode.USAGE, "invalid DOI 'a'"),
    Case("doi with a control character", ["doi", "10.1000/a\x01b"], ExitCode.USAGE, "control characters"),
    Case("doi unknown upstream", ["doi", "--no-enrich", "10.9999/unknown"], ExitCode.NOT_FOUND, "not found:"),
    Case("doi in unicode", ["doi", "--no-enrich", "10.1000/ünïcode-é"], ExitCode.NOT_FOUND, "ünïcode-é"),
    Case(
        "doi with parentheses and <",
        ["doi", "--no-enrich", "10.1002/(SICI)1097-4636(199706)35:4<465::AID-JBM7>3.0.CO;2-9"],
        ExitCode.NOT_FOUND,
        "not found: 10.1002/(sici)1097-4636(199706)35:4<465::aid-jbm7>3.0.co;2-9",
    ),
    Case(
        "doi 608 characters long",
        ["doi", "--no-enrich", LONG_DOI],
        ExitCode.NOT_FOUND,
        "not found: 10.1000/xxx",
    ),
    # ---- id files
    Case("id file empty", _id_file(""), ExitCode.USAGE, "no PMIDs in"),
    Case(
        "id file of comments and blank lines",
        _id_file("# none\n\n   \n# today\n"),
        ExitCode.USAGE,
        "no PMIDs",
    ),
    Case("id file missing", ["pmid", "--from", "/nonexistent/ids.txt"], ExitCode.USAGE, "id file not found"),
    Case("id file is a directory", ["pmid", "--from", "/"], ExitCode.USAGE, "id file cannot be read"),
    Case("id file not UTF-8", _id_file(b"35350566\n\xff\xfe\xfa\n"), ExitCode.USAGE, "UnicodeDecodeError"),
    Case(
        "id file huge, one valid id repeated 200,000 times",
        _id_file("900001\n" * 200_000),
        ExitCode.OK,
        "",
        database=CONSISTENT,
        stderr=REPORT,
        stored_after=["900001"],
    ),
    Case(
        "id file huge, 100,000 malformed lines",
        _id_file("not-an-id\n" * 100_000),
        ExitCode.USAGE,
        "(and 99999 more)",
    ),
    Case(
        "id file with blank lines, comments, CRLF, tabs and a byte-order mark",
        _id_file("\ufeff# my list\r\n900001\r\n\r\n\t900002   # second\r\n# end\r\n"),
        ExitCode.OK,
        "",
        database=CONSISTENT,
        stderr=REPORT,
        stored_after=["900001", "900002"],
    ),
    # ---- configuration
    Case(
        "config missing", ["--config", "/nonexistent/harvest.toml", "pmid", "1"], ExitCode.USAGE, "not found"
    ),
    Case("config not TOML", _with_config("[ncbi\nemail = 1", "pmid", "1"), ExitCode.USAGE, "not valid TOML"),
    Case("config unknown section", _with_config("[nbci]\n", "pmid", "1"), ExitCode.USAGE, "unknown section"),
    Case(
        "config unknown key", _with_config("[ncbi]\nbatch = 3\n", "pmid", "1"), ExitCode.USAGE, "unknown key"
    ),
    Case(
        "config wrong type",
        _with_config('[http]\ntimeout = "fast"\n', "pmid", "1"),
        ExitCode.USAGE,
        "http.timeout must be a number, not a string",
    ),
    Case(
        "config integer as string",
        _with_config('[ncbi]\nefetch_batch_size = "200"\n', "pmid", "1"),
        ExitCode.USAGE,
        "efetch_batch_size must be a whole number, not a string",
    ),
    Case(
        "config out of range",
        _with_config("[ncbi]\nrequests_per_second = 50\n", "pmid", "1"),
        ExitCode.USAGE,
        "at most 3",
    ),
    Case(
        "config secret in the file",
        _with_config('[ncbi]\napi_key = "abc"\n', "pmid", "1"),
        ExitCode.USAGE,
        "set NCBI_API_KEY in the environment",
    ),
    Case(
        "E-utilities URL not http",
        _env("HARVEST_EUTILS_URL", "ftp://x/", "pmid", "1"),
        ExitCode.USAGE,
        "http(s)",
    ),
    Case(
        "contact e-mail malformed",
        _env("HARVEST_EMAIL", "not an address", "pmid", "1"),
        ExitCode.USAGE,
        "e-mail",
    ),
    # ---- the database
    Case(
        "database URL of an unsupported kind",
        ["--db", "mysql://u@h/db", "pmid", "1"],
        ExitCode.USAGE,
        "unsupported",
    ),
    Case(
        "database file read-only",
        _read_only_sqlite,
        ExitCode.STORAGE,
        "the database is read-only",
        sqlite_only=True,
    ),
    Case("database file corrupt", _corrupt_sqlite, ExitCode.STORAGE, "harvest: error:", sqlite_only=True),
    Case(
        "database path under a file",
        lambda ctx: ["--db", ctx.file("plain", "x") + "/harvest.sqlite", "pmid", "1"],
        ExitCode.STORAGE,
        "harvest: error:",
    ),
    Case("database from a newer schema", _newer_schema, ExitCode.STORAGE, "newer than this version"),
    Case("database server unreachable", _unreachable_postgres, ExitCode.STORAGE, "harvest: error:"),
    Case(
        "disk full while storing",
        _disk_full,
        ExitCode.STORAGE,
        "the disk is full",
        database=CONSISTENT,
    ),
    # ---- the run itself
    Case(
        "Ctrl-C in the middle of a harvest",
        _ctrl_c_mid_harvest,
        ExitCode.INTERRUPTED,
        "interrupted; every batch stored before stays stored",
        database=CONSISTENT,
        stored_after=["900001", "900002"],
    ),
    Case(
        "upstream down for every attempt",
        _upstream_down,
        ExitCode.UPSTREAM,
        "900001",
        database=CONSISTENT,
        stderr=REPORT,
    ),
]


def _params() -> list[Any]:
    params = []
    for case in CASES:
        for dialect_param in database_params():
            dialect = dialect_param.values[0]
            marks = list(dialect_param.marks)
            if case.sqlite_only and dialect != "sqlite":
                marks.append(pytest.mark.skip(reason="a database-file case; PostgreSQL has no file"))
            params.append(pytest.param(case, dialect, id=f"{case.name}-{dialect}", marks=marks))
    return params


def _is_sqlite_file(url: str) -> bool:
    return Path(str(make_url(url).database)).read_bytes()[:16] == b"SQLite format 3\x00"


def _without_runs(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but the run log and the request budget's send times (each run writes them, by design)."""
    return {name: value for name, value in rows.items() if name not in {"harvest_runs", *BUDGET_TABLES}}


def test_catalogue_has_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "dialect"), _params())
def test_bad_input(
    case: Case,
    dialect: str,
    standin: StandIn,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if POSTGRES_URL:
        monkeypatch.setenv(POSTGRES_ENV, POSTGRES_URL)
    with fresh_database_url(dialect, tmp_path / "db") as url:
        monkeypatch.setenv("HARVEST_DATABASE_URL", url)
        assert run(["pmid", "--no-enrich", SEED_PMID]) == ExitCode.OK
        engine = sa.create_engine(url)
        try:
            ctx = Context(home, url, dialect, standin, monkeypatch)
            argv = case.argv(ctx) if callable(case.argv) else list(case.argv)
            readable = dialect != "sqlite" or _is_sqlite_file(url)
            before = snapshot(engine) if readable else {}
            capsys.readouterr()

            code = run(argv)

            monkeypatch.undo()  # the database is checked with the real code and environment
            err = capsys.readouterr().err
            assert code == case.exit_code, err
            assert "Traceback" not in err
            lines = [line for line in err.splitlines() if line.strip()]
            if case.stderr == ONE_LINE:
                assert len(lines) == 1, err
                assert case.needle in lines[0]
            else:
                assert all(line.startswith(REPORT_PREFIXES) for line in lines), err
                assert case.needle in err
            if not readable:
                assert not _is_sqlite_file(url)  # the corrupt file was left as it was: nothing written
                return
            after = snapshot(engine)
            if case.database == UNCHANGED:
                assert _without_runs(after) == _without_runs(before)
            else:
                _assert_consistent(engine, before, after, case.stored_after)
        finally:
            engine.dispose()


def _assert_consistent(
    engine: Engine,
    before: dict[str, list[tuple[Any, ...]]],
    after: dict[str, list[tuple[Any, ...]]],
    added: list[str],
) -> None:
    """What was stored before is still there; exactly the expected articles were added, each whole; every
    run is closed (none left "running")."""
    with engine.connect() as conn:
        pmids = sorted(r[0] for r in conn.execute(sa.text("SELECT pmid FROM articles")))
        statuses = [r[0] for r in conn.execute(sa.text("SELECT status FROM harvest_runs"))]
        authorless = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM articles a "
                "WHERE NOT EXISTS (SELECT 1 FROM authors u WHERE u.article_id = a.id)"
            )
        ).scalar_one()
    assert pmids == sorted([SEED_PMID, *added])
    assert authorless == 0  # every stored article has its child rows: no half-written record
    assert "running" not in statuses
    for name, rows in _without_runs(before).items():
        assert set(rows) <= set(after[name]), name
