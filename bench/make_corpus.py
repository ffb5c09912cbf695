"""Build a large PubMed XML file for benchmarks by cycling the recorded PubmedArticles with fresh PMIDs.

    python bench/make_corpus.py --records 30000 --out bench/out/corpus-30000.xml [--fixtures DIR]

Every PubmedArticle of ``$HARVEST_FIXTURES/eutils-pubmed-xml/*.xml`` and ``medline-updatefiles/**/*.xml[.gz]``
is used in turn; each copy gets a unique PMID (in MedlineCitation/PMID and in the ArticleIdList's pubmed id),
its own DOI (the template's with ".copy<N>" appended, N the copy's 0-based position in the file, in the
ArticleIdList and in the ELocationID alike) and its own PMCID ("PMC" + its PMID), where the template has
them. Real baseline files rarely repeat a DOI or PMCID (issue 12), so no two copies share one, not even
the first copies of two recorded articles that share a DOI among themselves. It is otherwise unchanged,
and the same arguments give the same bytes. The output is written as it is produced, one PubmedArticleSet
declaring the 2025 DTD. Files that declare a DTD older than 2015 are left out (see :func:`older_dtd`).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make harvester importable
from harvester.core.xmlsafe import parse_document

FIRST_PMID = 900_000_001
DOCTYPE = (
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)
_PLACEHOLDER = "@@PMID@@"
_DOI_SUFFIX = b"@@DOISUFFIX@@"
_PMCID = b"@@PMCID@@"
_DTD_YEAR = re.compile(rb"/pubmed_(\d\d)\d{4}\.dtd")


def fixture_files(fixtures: Path) -> list[Path]:
    """The PubMed XML files the corpus is made from, in a stable order."""
    files = sorted((fixtures / "eutils-pubmed-xml").glob("*.xml"))
    updates = fixtures / "medline-updatefiles"
    files += sorted(p for p in updates.rglob("*") if p.name.endswith((".xml", ".xml.gz")))
    return files


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def older_dtd(data: bytes) -> bool:
    """True when the file declares a PubMed DTD from before 2015.

    The corpus declares the 2025 DTD; Bio.Entrez, even with validate=False, refuses elements that DTD no
    longer allows where they stand (Article/Affiliation of the 2013 DTD), so such records are left out.
    """
    match = _DTD_YEAR.search(data[:1000])
    return match is not None and int(match.group(1)) < 15


def article_templates(files: list[Path]) -> list[list[bytes]]:
    """Each PubmedArticle serialised and split where its own PMIDs go, ready to be joined with a new one;
    its DOIs and PMCID are marked for :func:`corpus_chunks` to replace."""
    templates: list[list[bytes]] = []
    for path in files:
        data = _read(path)
        if older_dtd(data):
            print(f"left out (DTD older than 2015): {path.name}", file=sys.stderr)
            continue
        root = parse_document(data)
        articles = [root] if root.tag == "PubmedArticle" else root.findall("PubmedArticle")
        for article in articles:
            pmid = article.find("MedlineCitation/PMID")
            if pmid is None:
                continue
            pmid.text = _PLACEHOLDER
            for article_id in article.iterfind("PubmedData/ArticleIdList/ArticleId"):
                kind = article_id.get("IdType")
                if kind == "pubmed":
                    article_id.text = _PLACEHOLDER
                elif kind == "doi" and article_id.text:
                    article_id.text += _DOI_SUFFIX.decode()
                elif kind == "pmc" and article_id.text:
                    article_id.text = _PMCID.decode()
            for eloc in article.iterfind("MedlineCitation/Article/ELocationID"):
                if eloc.get("EIdType") == "doi" and eloc.text:
                    eloc.text += _DOI_SUFFIX.decode()
            fragment = etree.tostring(article, encoding="utf-8", with_tail=False)
            templates.append(fragment.split(_PLACEHOLDER.encode()))
    return templates


def corpus_chunks(templates: list[list[bytes]], records: int) -> Iterator[bytes]:
    """The corpus file, piece by piece, every copy with identifiers of its own.

    A DOI becomes ``<template's DOI>.copy<N>``: as the digits after the last ".copy" are the copy's own
    position, two copies never end up with one DOI, whatever their templates share.
    """
    yield b'<?xml version="1.0" encoding="utf-8"?>\n' + DOCTYPE + b"\n<PubmedArticleSet>\n"
    for index in range(records):
        pmid = str(FIRST_PMID + index).encode()
        record = pmid.join(templates[index % len(templates)])
        record = record.replace(_DOI_SUFFIX, f".copy{index}".encode())
        record = record.replace(_PMCID, b"PMC" + pmid)
        yield record + b"\n"
    yield b"</PubmedArticleSet>\n"


def write_corpus(out: Path, records: int, fixtures: Path) -> int:
    """Write the corpus to ``out`` and return how many distinct source articles it cycles through."""
    templates = article_templates(fixture_files(fixtures))
    if not templates:
        raise SystemExit(f"no PubmedArticle found under {fixtures}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tmp.open("wb") as handle:
        for chunk in corpus_chunks(templates, records):
            handle.write(chunk)
    tmp.replace(out)
    return len(templates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fixtures", type=Path, default=None, help="default: $HARVEST_FIXTURES")
    args = parser.parse_args(argv)
    fixtures = args.fixtures or (
        Path(os.environ["HARVEST_FIXTURES"]) if "HARVEST_FIXTURES" in os.environ else None
    )
    if fixtures is None:
        parser.error("give --fixtures DIR or set HARVEST_FIXTURES")
    sources = write_corpus(args.out, args.records, fixtures)
    size = args.out.stat().st_size
    print(f"wrote {args.records} records ({sources} distinct sources, {size / 1e6:.1f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
