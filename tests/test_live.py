"""A live smoke test against the real NCBI and Crossref services (issue 6), left out of CI.

Run it yourself with ``pytest -m network tests/test_live.py`` (set HARVEST_EMAIL to your address; NCBI asks
every caller for one; NCBI_API_KEY is used when set). It harvests PMID 35350566 into a temporary SQLite
database through the real ``harvest`` CLI and compares what was stored with the seed facts
(/work/shared/seed/catalogue-record-35350566.txt and tests/fixtures/efetch_pubmed_35350566.xml): title,
the six authors in order, journal, DOI, PMCID, dates and language. The default run (``-m "not network"``
in pyproject.toml) never collects it into a session.
"""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from harvester.cli import run
from harvester.core.errors import ExitCode

pytestmark = pytest.mark.network

SEED_PMID = "35350566"
SEED_TITLE = "The Role of Tumor Stem Cell Exosomes in Cancer Invasion and Metastasis"
SEED_AUTHORS = [
    ("Liu", "Kun"),
    ("Gao", "Xin"),
    ("Kang", "Baoqiang"),
    ("Liu", "Yunpeng"),
    ("Wang", "Dingding"),
    ("Wang", "Yi"),
]


def test_live_harvest_of_the_seed_article_matches_the_seed_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("HARVEST_") and name != "HARVEST_EMAIL":
            monkeypatch.delenv(name)
    monkeypatch.setenv(
        "HARVEST_EMAIL", os.environ.get("HARVEST_EMAIL") or "pubmed-harvester-smoke@example.org"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    database = f"sqlite:///{tmp_path / 'live.sqlite'}"

    assert run(["--db", database, "pmid", SEED_PMID]) == ExitCode.OK
    out = io.StringIO()
    with redirect_stdout(out):
        assert run(["--db", database, "show", "--format", "json", SEED_PMID]) == ExitCode.OK
    [doc] = json.loads(out.getvalue())

    assert doc["pmid"] == SEED_PMID
    assert doc["title"] == SEED_TITLE
    assert [(a["last_name"], a["fore_name"]) for a in doc["authors"]] == SEED_AUTHORS
    assert doc["journal"]["iso_abbrev"] == "Front Oncol"
    assert doc["journal"]["title"] == "Frontiers in oncology"
    assert doc["doi"] == "10.3389/fonc.2022.836548"
    assert doc["pmcid"] == "PMC8958025"
    assert doc["epub_date"] == "2022-03-08"
    assert str(doc["pub_date"]).startswith("2022")
    assert doc["language"] == ["eng"]
    assert doc["abstract"].startswith("Exosomes are lipid membrane bilayer-encapsulated vesicles")
    assert doc["retracted"] is False
