"""A stored raw payload of any source parsed back into its record, so that a merge never fetches. Pure.

The store keeps each record's raw bytes (raw_payloads): PubMed XML, PMC front matter (JATS), Crossref
JSON. Re-merging an article reads them back and parses them here, with the same parsers that read them
the first time.
"""

from __future__ import annotations

from enrich.crossref_json import parse_crossref_response
from enrich.pmc_jats import parse_pmc_articles
from enrich.records import CrossrefWork, PmcFront
from harvester.core.records import Article
from harvester.sources.pubmed_xml import parse_pubmed

# The sources whose payloads parse back into records (source_records.source, raw_payloads.source).
PUBMED, PMC, CROSSREF = "pubmed", "pmc", "crossref"


def parse_payload(source: str, raw: bytes) -> Article | PmcFront | CrossrefWork | None:
    """The record a stored payload holds (its first one), parsed by its source's parser.

    Args:
        source: "pubmed", "pmc" or "crossref"; any other source (iCite, say) gives None.
        raw: the payload as it was fetched (decompressed).

    Returns:
        The record, or None: another source, or a payload that holds no record of it.

    Raises:
        HarvestError: the payload does not parse (a ParseError, mostly).
    """
    if source == PUBMED:
        return next((r for r in parse_pubmed(raw) if isinstance(r, Article)), None)
    if source == PMC:
        return next(iter(parse_pmc_articles(raw)), None)
    if source == CROSSREF:
        works = parse_crossref_response(raw)
        return works[0] if works else None
    return None
