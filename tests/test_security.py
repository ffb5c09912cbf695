"""Security (issue 6): hostile XML, oversize answers, secrets kept secret, SQL with bound parameters only.

- XML: external entities and DTDs are never fetched or read, any entity declaration is refused, and an
  entity-expansion bomb is refused with a clear error (libxml2 stops it while reading the prolog; how
  long that takes is not asserted here, see the README's figures).
- An answer larger than ``[http] max_response_bytes`` is refused, not read.
- Known fake secrets (the NCBI api_key, the Crossref token and, on PostgreSQL, the database password)
  appear in no log line (at -vv, in the log file too), no console output and no column of any table, in
  plain or URL-encoded form, after a harvest with enrichment, a re-enrichment and failing requests.
- SQL is built with bound parameters only: a scan of the code for SQL made with f-strings, ``%`` or
  ``.format`` (a short, commented allow-list names the DDL that cannot bind).
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.engine import make_url

from enrich.pmc_jats import parse_pmc_articles
from harvester.cli import run
from harvester.core.errors import BadResponseError, ExitCode, ParseError
from harvester.core.xmlsafe import EntityDeclarationError, iterparse_safe, parse_document
from harvester.sources.eutils import check_eutils_xml
from harvester.sources.http import Response
from harvester.sources.pubmed_xml import parse_pubmed
from tests import test_cli
from tests.db_helpers import POSTGRES_ENV, database_params, fresh_database_url
from tests.standin import StandIn, Status
from tests.test_cli import default_db, stored_pmids

# The end-to-end fixtures of the CLI tests (an isolated HOME, the stand-in, short back-off).
home, standin, fast_config = test_cli.home, test_cli.standin, test_cli.fast_config
# Read before ``home`` clears every HARVEST_* variable.
POSTGRES_URL = os.environ.get(POSTGRES_ENV)

ROOT = Path(__file__).parent.parent
SEED_CROSSREF = Path(__file__).parent / "fixtures" / "crossref_work_10.3389_fonc.2022.836548.json"
SEED_PMC = Path(__file__).parent / "fixtures" / "efetch_pmc_PMC8958025.xml"

RECORD = (
    '<PubmedArticle><MedlineCitation><PMID Version="1">1</PMID><Article>'
    "<ArticleTitle>{title}</ArticleTitle></Article></MedlineCitation></PubmedArticle>"
)


def pubmed_doc(prolog: str, title: str) -> bytes:
    body = RECORD.format(title=title)
    return f'<?xml version="1.0"?>\n{prolog}\n<PubmedArticleSet>{body}</PubmedArticleSet>\n'.encode()


def billion_laughs(levels: int = 10) -> bytes:
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    prolog = "<!DOCTYPE PubmedArticleSet [\n" + "\n".join(entities) + "\n]>"
    return pubmed_doc(prolog, f"&lol{levels - 1};")


def quadratic_blowup(size: int = 100_000, references: int = 20_000) -> bytes:
    prolog = f'<!DOCTYPE PubmedArticleSet [<!ENTITY big "{"x" * size}">]>'
    return pubmed_doc(prolog, "&big;" * references)


def response(body: bytes) -> Response:
    from datetime import UTC, datetime

    return Response("https://eutils.example/efetch.fcgi", 200, {}, body, datetime.now(UTC))


# ---- hostile XML ---------------------------------------------------------------------------------


@pytest.fixture
def local_secret(tmp_path: Path) -> tuple[Path, str]:
    marker = "LOCAL-FILE-CONTENT-4f1d2c"
    path = tmp_path / "secret.txt"
    path.write_text(marker)
    return path, marker


def test_external_entity_to_a_local_file_is_refused_and_the_file_never_read(
    local_secret: tuple[Path, str],
) -> None:
    path, marker = local_secret
    doc = pubmed_doc(f'<!DOCTYPE PubmedArticleSet [<!ENTITY x SYSTEM "{path.as_uri()}">]>', "&x;")
    with pytest.raises(EntityDeclarationError, match="entity declarations are refused") as raised:
        parse_document(doc)
    assert marker not in str(raised.value)
    with pytest.raises(ParseError, match="entity declarations are refused") as parsed:
        list(parse_pubmed(doc, keep_raw=True))
    assert marker not in str(parsed.value)
    with pytest.raises(BadResponseError, match="entity declarations are refused"):
        check_eutils_xml(response(doc), expected_root="PubmedArticleSet")


def test_external_entity_in_a_pmc_answer_is_refused(local_secret: tuple[Path, str]) -> None:
    path, marker = local_secret
    text = SEED_PMC.read_text(encoding="utf-8")
    doctype_end = text.index(">", text.index("<!DOCTYPE")) + 1
    hostile = (
        f'<?xml version="1.0"?>\n<!DOCTYPE pmc-articleset [<!ENTITY x SYSTEM "{path.as_uri()}">]>'
        + text[doctype_end:].replace("<article-title>", "<article-title>&x;", 1)
    )
    with pytest.raises(ParseError, match="entity declarations are refused") as raised:
        list(parse_pmc_articles(hostile.encode(), keep_raw=True))
    assert marker not in str(raised.value)


def test_external_dtd_and_parameter_entities_are_never_fetched() -> None:
    with StandIn() as server:
        dtd_url = server.base_url + "dtd/evil.dtd"
        external_dtd = pubmed_doc(f'<!DOCTYPE PubmedArticleSet SYSTEM "{dtd_url}">', "Plain title")
        # A DOCTYPE naming an external DTD is how every NCBI answer starts: it parses, with nothing fetched.
        [article] = list(parse_pubmed(external_dtd))
        assert getattr(article, "title", None) == "Plain title"
        parse_document(external_dtd)
        for name in ("pe", "entity"):
            declaration = (
                f'<!ENTITY % p SYSTEM "{server.base_url}dtd/{name}.dtd"> %p;'
                if name == "pe"
                else f'<!ENTITY e SYSTEM "{server.base_url}dtd/{name}.xml">'
            )
            hostile = pubmed_doc(
                f"<!DOCTYPE PubmedArticleSet [{declaration}]>", "&e;" if name == "entity" else "t"
            )
            with pytest.raises(etree.XMLSyntaxError):
                parse_document(hostile)
            with pytest.raises(ParseError):
                list(parse_pubmed(hostile))
            with pytest.raises(etree.XMLSyntaxError):
                list(iterparse_safe(_stream(hostile), tag="PubmedArticle"))
        assert server.requests == []  # the stand-in saw no DTD or entity fetch at all


def _stream(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)


@pytest.mark.parametrize("bomb", [billion_laughs(), quadratic_blowup()], ids=["billion-laughs", "quadratic"])
def test_entity_expansion_bomb_is_refused_with_a_clear_error(bomb: bytes) -> None:
    with pytest.raises(etree.XMLSyntaxError) as raised:
        parse_document(bomb)
    assert "entit" in str(raised.value).lower()  # "amplification" by libxml2, or our declaration refusal
    with pytest.raises(ParseError) as parsed:
        list(parse_pubmed(bomb))
    assert "entit" in str(parsed.value).lower()
    assert len(str(parsed.value)) < 300  # a message, not the expansion


def test_hostile_efetch_answer_through_the_cli_stores_nothing_and_reads_no_file(
    standin: StandIn,
    home: Path,
    fast_config: Path,
    local_secret: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, marker = local_secret
    doc = pubmed_doc(f'<!DOCTYPE PubmedArticleSet [<!ENTITY x SYSTEM "{path.as_uri()}">]>', "&x;")
    standin.fail_always("efetch.fcgi", Status(200, doc, {"Content-Type": "text/xml"}))
    assert run(["pmid", "--no-enrich", "35350566"]) == ExitCode.UPSTREAM
    err = capsys.readouterr().err
    assert "entity declarations are refused" in err
    assert marker not in err
    assert "Traceback" not in err
    assert not default_db(home).exists() or stored_pmids(default_db(home)) == []


def test_answer_above_the_size_cap_is_refused_not_retried_and_nothing_stored(
    standin: StandIn, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = home / "small.toml"
    config.write_text("[http]\nmax_response_bytes = 4096\nmax_attempts = 3\nbackoff_initial = 0.01\n")
    assert len(standin.record_xml("35350566")) > 4096
    assert run(["--config", str(config), "pmid", "--no-enrich", "35350566"]) == ExitCode.UPSTREAM
    err = capsys.readouterr().err
    assert "refused (limit 4096 bytes)" in err
    assert "Traceback" not in err
    assert len(standin.requests_for("efetch.fcgi")) == 1  # a size refusal is not retried
    assert stored_pmids(default_db(home)) == []


# ---- secrets --------------------------------------------------------------------------------------

FAKE_API_KEY = "FaKe+NcBi/Key=5e3f9a"  # "+", "/" and "=" make its URL-encoded forms differ from it
FAKE_TOKEN = "FaKe-CrossRef-Plus-Token-77&31"
FAKE_PASSWORD = "FaKe-Pg-Pass@word-99/21"


def secret_forms(*secrets: str) -> set[str]:
    return {form for s in secrets for form in (s, quote(s, safe=""), quote_plus(s))}


def _decoded(value: object) -> str:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if isinstance(value, bytes):
        for unpack in (gzip.decompress, zlib.decompress):
            try:
                value = unpack(value)
                break
            except (OSError, zlib.error, EOFError):
                continue
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return str(value)


def every_stored_text(url: str) -> Iterator[tuple[str, str]]:
    """(table.column, text) for every non-null value of every table, blobs decompressed."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            for table in inspector.get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608 - reflected names
                    for column, value in row._mapping.items():
                        if value is not None:
                            yield f"{table}.{column}", _decoded(value)
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", database_params())
def test_fake_secrets_reach_no_log_line_no_output_and_no_table(
    dialect: str,
    standin: StandIn,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = json.loads(SEED_CROSSREF.read_text("utf-8"))["message"]
    standin.add_crossref_works(message)
    standin.add_pmc_articles(SEED_PMC)
    log_file = tmp_path / "harvest.log"
    monkeypatch.setenv("NCBI_API_KEY", FAKE_API_KEY)
    monkeypatch.setenv("CROSSREF_PLUS_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HARVEST_LOG_FILE", str(log_file))
    config = home / "fast.toml"
    config.write_text("[http]\nmax_attempts = 2\nbackoff_initial = 0.01\nbackoff_max = 0.02\ntimeout = 2\n")
    monkeypatch.setenv("HARVEST_CONFIG", str(config))
    secrets = [FAKE_API_KEY, FAKE_TOKEN]
    if POSTGRES_URL:
        monkeypatch.setenv(POSTGRES_ENV, POSTGRES_URL)
    with fresh_database_url(dialect, tmp_path / "db") as url:
        if dialect == "postgresql":
            url = make_url(url).set(password=FAKE_PASSWORD).render_as_string(hide_password=False)
            secrets.append(FAKE_PASSWORD)
        monkeypatch.setenv("HARVEST_DATABASE_URL", url)

        assert run(["-vv", "pmid", "35350566", "900001"]) == ExitCode.OK
        assert run(["-vv", "enrich", "35350566"]) == ExitCode.OK
        # Failing requests whose error bodies echo the secrets, as a proxy echoing the URL would.
        echo = f"api_key={FAKE_API_KEY} api_key={quote(FAKE_API_KEY, safe='')} Bearer {FAKE_TOKEN}".encode()
        standin.fail_always("efetch.fcgi", Status(502, echo))
        standin.fail_always("crossref/works", Status(500, echo))
        assert run(["-vv", "pmid", "900002"]) == ExitCode.UPSTREAM
        assert run(["-vv", "enrich", "35350566"]) == ExitCode.UPSTREAM
        standin.clear_faults()
        if dialect == "postgresql":  # a database that cannot be reached, named with the password
            bad = make_url(url).set(port=9).render_as_string(hide_password=False)
            monkeypatch.setenv("HARVEST_DATABASE_URL", bad)
            assert run(["-vv", "pmid", "900003"]) == ExitCode.STORAGE
            monkeypatch.setenv("HARVEST_DATABASE_URL", url)
        stored = list(every_stored_text(url))

    captured = capsys.readouterr()
    log_lines = log_file.read_text(encoding="utf-8").splitlines()
    # The scan looks where the secrets would be if anything leaked.
    assert any("DEBUG" in line and "efetch.fcgi" in line for line in log_lines)
    assert any("api_key=***" in line for line in log_lines)
    assert any(table.startswith("raw_payloads.") for table, _ in stored)
    assert standin.requests_for("efetch.fcgi")[0].params["api_key"] == FAKE_API_KEY
    assert any(
        r.headers.get("Crossref-Plus-API-Token") == f"Bearer {FAKE_TOKEN}"
        for r in standin.requests_for("crossref")
    )
    forms = secret_forms(*secrets)
    leaks = [("log", line) for line in log_lines if any(f in line for f in forms)]
    leaks += [("stdout", line) for line in captured.out.splitlines() if any(f in line for f in forms)]
    leaks += [("stderr", line) for line in captured.err.splitlines() if any(f in line for f in forms)]
    leaks += [(where, text[:200]) for where, text in stored if any(f in text for f in forms)]
    assert leaks == []


# ---- SQL with bound parameters ---------------------------------------------------------------------

SCANNED = ("db", "harvester", "enrich", "migrations")
SQL_START = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "BEGIN", "WITH", "PRAGMA", "SET ",
    "TRUNCATE", "VACUUM", "ANALYZE", "GRANT", "REFRESH",
)  # fmt: skip
SQL_CALLS = frozenset({"text", "exec_driver_sql", "execute", "executescript"})
# Formatted SQL that cannot use bound parameters, each with the reason. (file, enclosing function)
ALLOWED = {
    # BEGIN DEFERRED/IMMEDIATE: the mode is one of two literals chosen in code, and a transaction
    # statement takes no parameters.
    ("db/engine.py", "_on_sqlite_begin"),
    # SET lock_timeout = <milliseconds>: an integer computed from the settings; SET takes no parameters.
    ("db/engine.py", "on_connect"),
    # CREATE VIEW / DROP VIEW <name>: view names and SELECTs are constants of the migration; DDL takes
    # no parameters.
    ("migrations/versions/0003_reporting_views.py", "upgrade"),
    ("migrations/versions/0003_reporting_views.py", "downgrade"),
    ("migrations/versions/0009_icite.py", "upgrade"),  # the citation-impact views, the same way
    ("migrations/versions/0009_icite.py", "downgrade"),
    # The cascade triggers and their functions on PostgreSQL: table and column names from the migration's
    # own constants (the dropped foreign keys); DDL takes no parameters.
    ("migrations/versions/0014_child_references.py", "upgrade"),
    ("migrations/versions/0014_child_references.py", "downgrade"),
    # The read queries of `harvest show` (plain SQL, no ORM: start-up), built once at import: table and
    # column names from the module's own constants (the models' names); ids and values are bound.
    ("db/documents.py", "<module>"),
}


def _formats(node: ast.AST) -> bool:
    """Whether an expression builds a string by formatting: an f-string with fields, % or .format()."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return _is_text(node.left) or _is_text(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def _is_text(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or isinstance(node, ast.JoinedStr)


def _leading_text(node: ast.AST) -> str:
    while True:
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
        if isinstance(node, ast.BinOp):
            node = node.left
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        else:
            return ""


def formatted_sql(path: Path) -> Iterator[tuple[int, str]]:
    """(line, enclosing function) of each line building SQL by formatting, in line order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    functions: list[tuple[int, int, str]] = [
        (n.lineno, n.end_lineno or n.lineno, n.name)
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]

    def enclosing(line: int) -> str:
        inside = [(start, name) for start, end, name in functions if start <= line <= end]
        return max(inside)[1] if inside else "<module>"

    found: set[int] = set()
    for node in ast.walk(tree):
        suspects: list[ast.expr] = []
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in SQL_CALLS and node.args:
                suspects.append(node.args[0])
        # SQL keywords are written in capitals here; "update {x}" in a log message is not SQL.
        if _formats(node) and _leading_text(node).lstrip().startswith(SQL_START):
            suspects.append(node)  # type: ignore[arg-type]  # _formats() holds only for expressions
        found.update(suspect.lineno for suspect in suspects if _formats(suspect))
    for line in sorted(found):
        yield line, enclosing(line)


def test_the_scan_finds_formatted_sql(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "import sqlalchemy as sa\n"
        "def bad(conn, name):\n"
        "    conn.execute(sa.text(f\"SELECT * FROM articles WHERE pmid = '{name}'\"))\n"
        "    conn.exec_driver_sql('DELETE FROM articles WHERE pmid = %s' % name)\n"
        "    query = \"UPDATE articles SET title = '{}'\".format(name)\n"
        "def good(conn, name):\n"
        "    conn.execute(sa.text('SELECT * FROM articles WHERE pmid = :pmid'), {'pmid': name})\n"
        "    log = f'updated {name}'\n"
    )
    assert [line for line, _ in formatted_sql(module)] == [3, 4, 5]


def test_sql_is_built_with_bound_parameters_only() -> None:
    found = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for line, function in formatted_sql(path):
                if (relative, function) not in ALLOWED:
                    found.append(f"{relative}:{line} in {function}()")
    assert found == [], "SQL built by string formatting (bind parameters, or allow-list DDL with a reason)"
