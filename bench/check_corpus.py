"""Check that a bench corpus looks like a real file: ingest it into a fresh SQLite file and count.

    python bench/check_corpus.py --records 2000 [--corpus PATH] [--fixtures DIR]

Builds ``bench/out/corpus-<records>.xml`` with make_corpus.py when it is missing (or takes ``--corpus``),
applies it with ``harvester.jobs.ingest.ingest_files`` (what ``harvest ingest FILE`` does) into a new,
migrated SQLite file, and prints one JSON object: records created, conflicts recorded, articles, articles
with a DOI and with a PMCID, distinct DOIs and PMCIDs, and from the view ``report_shared_identifiers`` the
DOIs and PMCIDs held by more than one article (and how many articles hold them). A real baseline file
rarely repeats a DOI: a corpus whose copies share their templates' identifiers measures the conflict and
sharing paths of the store instead of its common one (issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere: make harvester/db importable
sys.path.insert(0, str(HERE))


def corpus_figures(corpus: Path) -> dict[str, Any]:
    """Ingest ``corpus`` into a fresh SQLite file and count what makes it look real or not."""
    import sqlalchemy as sa

    from db.engine import open_database
    from harvester.core.settings import Settings
    from harvester.jobs.ingest import ingest_files

    with tempfile.TemporaryDirectory(prefix="check-corpus-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'check.sqlite'}"
        engine = open_database(url)
        try:
            report = ingest_files([corpus], settings=Settings(database_url=url), services=None, engine=engine)
            [applied] = report.files
            if applied.outcome != "applied":
                raise SystemExit(f"{corpus}: {applied.outcome} ({applied.message})")
            with engine.connect() as conn:

                def one(sql: str) -> int:
                    return int(conn.execute(sa.text(sql)).scalar_one())

                figures: dict[str, Any] = {
                    "records": applied.records,
                    "created": applied.created,
                    "conflicts": applied.conflict_count,
                    "conflict_rows": one("SELECT COUNT(*) FROM conflicts"),
                    "articles": one("SELECT COUNT(*) FROM articles"),
                    "with_doi": one("SELECT COUNT(*) FROM articles WHERE doi IS NOT NULL"),
                    "distinct_dois": one("SELECT COUNT(DISTINCT doi) FROM articles"),
                    "with_pmcid": one("SELECT COUNT(*) FROM articles WHERE pmcid IS NOT NULL"),
                    "distinct_pmcids": one("SELECT COUNT(DISTINCT pmcid) FROM articles"),
                }
                for id_type in ("doi", "pmcid"):
                    row = conn.execute(
                        sa.text(
                            "SELECT COUNT(DISTINCT value), COUNT(*) FROM report_shared_identifiers"
                            " WHERE id_type = :t"
                        ),
                        {"t": id_type},
                    ).one()
                    figures[f"shared_{id_type}s"] = int(row[0])
                    figures[f"articles_sharing_a_{id_type}"] = int(row[1])
        finally:
            engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000)
    parser.add_argument("--corpus", type=Path, default=None, help="default: bench/out/corpus-<records>.xml")
    parser.add_argument(
        "--fixtures", type=Path, default=None, help="to build the corpus (default: $HARVEST_FIXTURES)"
    )
    args = parser.parse_args(argv)
    corpus: Path = args.corpus or HERE / "out" / f"corpus-{args.records}.xml"
    if not corpus.exists():
        from make_corpus import write_corpus

        fixtures = args.fixtures or (
            Path(os.environ["HARVEST_FIXTURES"]) if os.environ.get("HARVEST_FIXTURES") else None
        )
        if fixtures is None:
            parser.error(f"{corpus} does not exist: give --fixtures DIR or set HARVEST_FIXTURES to build it")
        write_corpus(corpus, args.records, fixtures)
    print(json.dumps({"corpus": str(corpus), **corpus_figures(corpus)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
