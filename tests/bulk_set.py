"""A small 2026 release for the worker tests: baseline and update files with NLM's names, in NLM's folders.

Made from the real records of $HARVEST_FIXTURES/medline-updatefiles (never copied into the repository):

- ``baseline/pubmed26n0001.xml.gz``, ``n0002.xml``, ``n0003.xml``: the 177 records of the costosys sample
  (59 each; gzipped and plain), independent of one another as baseline files are;
- ``updatefiles/pubmed26n0004.xml.gz``: the jcore excerpt as it is (3 records of another year);
- ``n0005.xml``: the derived DeleteCitation excerpt as it is (deletes 7 of the baseline's PMIDs);
- ``n0006.xml``: generated: 4 baseline records revised (a new title), one of them a PMID n0005 deleted
  (so it comes back only if n0006 is applied after n0005), and a DeleteCitation of 2 other PMIDs;
- ``n0007.xml``: generated: one record of n0006 revised again, and one of the deleted PMIDs sent as it was
  (so the end state holds only if n0007 comes after n0006).

Applied in any other order than NLM's, the update files leave other titles and other deletions: a run that
breaks the ordering rules cannot end equal to one process applying them in order.
"""

from __future__ import annotations

import gzip
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.helpers_fixtures import shared_fixture

COSTOSYS = "medline-updatefiles/costosys-pubmedsample18n0001.xml.gz"
JCORE = "medline-updatefiles/jcore-pubmed21n1016_excerpt_original.xml.gz"
DELETIONS = "medline-updatefiles/derived/pubmedsample_2019.excerpt-DeleteCitation.xml"
DELETED_BY_N0005 = ["23203860", "23203861", "23203892", "23203893", "23203894", "23203895", "23203896"]
HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n<PubmedArticleSet>\n'
)
_RECORD = re.compile(r"<PubmedArticle>.*?</PubmedArticle>", re.DOTALL)
_PMID = re.compile(r'<PMID Version="\d+">(\d+)</PMID>')
_TITLE = re.compile(r"<ArticleTitle>(.*?)</ArticleTitle>|<ArticleTitle/>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class BulkSet:
    baseline: Path  # the folder of the three baseline files
    updates: Path  # the folder of the four update files
    revived: str  # the PMID n0005 deletes and n0006 revives (changed)
    retitled: str  # the PMID n0006 and n0007 both revise: n0007's title must win
    deleted_by_n0006: tuple[str, str]

    def update(self, number: int) -> Path:
        return next(self.updates.glob(f"pubmed26n{number:04d}.xml*"))

    def files(self) -> list[Path]:
        return sorted([*self.baseline.iterdir(), *self.updates.iterdir()], key=lambda p: p.name)


def records() -> list[str]:
    """The costosys sample's PubmedArticle elements, as text, in file order."""
    text = gzip.decompress(shared_fixture(COSTOSYS).read_bytes()).decode("utf-8")
    return _RECORD.findall(text)


def pmid_of(record: str) -> str:
    found = _PMID.search(record)
    assert found is not None
    return found.group(1)


def retitled(record: str, title: str) -> str:
    return _TITLE.sub(f"<ArticleTitle>{title}</ArticleTitle>", record, count=1)


def write_set(path: Path, elements: list[str], *, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (HEAD + "\n".join(elements) + "\n</PubmedArticleSet>\n").encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def deletion(*pmids: str) -> str:
    return "<DeleteCitation>" + "".join(f'<PMID Version="1">{p}</PMID>' for p in pmids) + "</DeleteCitation>"


def make_bulk_set(root: Path) -> BulkSet:
    """The files under ``root`` (module docstring)."""
    every = records()
    assert len(every) == 177
    baseline, updates = root / "baseline", root / "updatefiles"
    write_set(baseline / "pubmed26n0001.xml.gz", every[:59], compress=True)
    write_set(baseline / "pubmed26n0002.xml", every[59:118])
    write_set(baseline / "pubmed26n0003.xml", every[118:])
    updates.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared_fixture(JCORE), updates / "pubmed26n0004.xml.gz")
    shutil.copyfile(shared_fixture(DELETIONS), updates / "pubmed26n0005.xml")
    by_pmid = {pmid_of(r): r for r in every}
    revived = DELETED_BY_N0005[0]
    kept = [p for p in by_pmid if p not in DELETED_BY_N0005]
    twice, once_a, once_b, gone_a, gone_b = kept[3], kept[70], kept[140], kept[20], kept[100]
    write_set(
        updates / "pubmed26n0006.xml",
        [
            retitled(by_pmid[revived], "Revived by update 6"),
            retitled(by_pmid[twice], "Revised by update 6"),
            retitled(by_pmid[once_a], "Revised once by update 6"),
            retitled(by_pmid[once_b], "Also revised by update 6"),
            deletion(gone_a, gone_b),
        ],
    )
    write_set(
        updates / "pubmed26n0007.xml",
        [retitled(by_pmid[twice], "Revised again by update 7"), by_pmid[DELETED_BY_N0005[1]]],
    )
    return BulkSet(baseline, updates, revived, twice, (gone_a, gone_b))
