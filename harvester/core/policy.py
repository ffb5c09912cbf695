"""The merge policy: which fields exist and which source each takes first, with the config's overrides.

These are the words the config file's ``[merge]`` table and :mod:`enrich.merge` share; the settings read
and check the table here, so that reading a config never imports the merging code. What counts as a value
not stated (:func:`is_empty`) is here too, for the documents that name each stated field's source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from harvester.core.errors import ConfigError

__all__ = ["DEFAULT_POLICY", "FIELDS", "SHARED_FIELDS", "SOURCES", "is_empty", "policy_from_config"]

SOURCES: tuple[str, ...] = ("pubmed", "pmc", "crossref")

# Field -> kind. The kind says how two values are compared: "title", "name" (publisher, journal), "doi",
# "issn", "date" (ISO partial), "pages", "text" (volume, issue, other strings), "int", and "object" /
# "list" (JSON objects and lists, compared as they are).
FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "title": "title",
        "abstract": "text",
        "authors": "list",
        "journal_title": "name",
        "journal_iso_abbrev": "text",
        "issn": "issn",
        "volume": "text",
        "issue": "text",
        "pages": "pages",
        "pub_date": "date",
        "epub_date": "date",
        "keywords": "list",
        "doi": "doi",
        "pmcid": "text",
        "publisher": "name",
        "license": "object",  # {"url", "type"}: the licence the article is under
        "licenses": "list",  # every licence statement: {"url", "license_type", "text", "start_date"}
        "copyright": "text",
        "copyright_year": "int",
        "subjects": "list",
        "citation_count": "int",
        "references_count": "int",
        "crossref_type": "text",
        "funders": "list",  # {"name", "doi", "awards": [...]}
        "updates": "list",  # {"kind", "direction", "doi", "asserted_by", "update_date", "label"}
        "clinical_trials": "list",
    }
)

SHARED_FIELDS: tuple[str, ...] = (
    "title",
    "doi",
    "pub_date",
    "epub_date",
    "journal_title",
    "issn",
    "volume",
    "issue",
    "pages",
    "publisher",
)

_BIBLIOGRAPHIC = ("pubmed", "pmc", "crossref")

# PubMed first for what its indexers curate; PMC (the publisher's JATS) for licence, copyright, subjects
# and publisher; Crossref for what only it counts or links. PMC comes before Crossref for authors because
# JATS contributors carry affiliations and ORCIDs that Crossref deposits often lack; PMC's front matter has
# no abstract, so abstract names PubMed and Crossref only.
DEFAULT_POLICY: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "title": _BIBLIOGRAPHIC,
        "abstract": ("pubmed", "crossref"),
        "authors": _BIBLIOGRAPHIC,
        "journal_title": _BIBLIOGRAPHIC,
        "journal_iso_abbrev": ("pubmed", "crossref"),
        "issn": _BIBLIOGRAPHIC,
        "volume": _BIBLIOGRAPHIC,
        "issue": _BIBLIOGRAPHIC,
        "pages": _BIBLIOGRAPHIC,
        "pub_date": _BIBLIOGRAPHIC,
        "epub_date": _BIBLIOGRAPHIC,
        "keywords": ("pubmed", "pmc"),
        "doi": _BIBLIOGRAPHIC,
        "pmcid": ("pubmed", "pmc"),
        "publisher": ("pmc", "crossref", "pubmed"),
        "license": ("pmc", "crossref"),
        "licenses": ("pmc", "crossref"),
        "copyright": ("pmc",),
        "copyright_year": ("pmc",),
        "subjects": ("pmc", "crossref"),
        "citation_count": ("crossref",),
        "references_count": ("crossref", "pubmed"),
        "crossref_type": ("crossref",),
        "funders": ("crossref", "pmc"),
        "updates": ("crossref",),
        "clinical_trials": ("crossref",),
    }
)


def policy_from_config(overrides: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    """The default policy with ``overrides`` (field -> sources in order of precedence) put in.

    Raises:
        ConfigError: an unknown field or source, a source named twice, or no source at all.
    """
    policy = dict(DEFAULT_POLICY)
    for name, order in overrides.items():
        if name not in FIELDS:
            raise ConfigError(f"merge: unknown field {name!r} (fields: {', '.join(FIELDS)})")
        if isinstance(order, str):
            raise ConfigError(f"merge.{name}: expected a list of sources, not the string {order!r}")
        sources = tuple(order)
        if not sources:
            raise ConfigError(f"merge.{name}: name at least one source ({', '.join(SOURCES)})")
        for source in sources:
            if source not in SOURCES:
                raise ConfigError(f"merge.{name}: unknown source {source!r} (sources: {', '.join(SOURCES)})")
        if len(set(sources)) != len(sources):
            raise ConfigError(f"merge.{name}: a source is named twice in {list(sources)}")
        policy[name] = sources
    return MappingProxyType(policy)


def is_empty(value: Any) -> bool:
    """True for what counts as "not stated": None, "", an empty list or object, an object of empties."""
    if value is None or value == "" or value == [] or value == ():
        return True
    if isinstance(value, Mapping):
        return all(is_empty(v) for v in value.values())
    return False
