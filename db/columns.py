"""Facts about stored columns for code that reads them without the SQLAlchemy models (:mod:`db.reading`).

tests/test_startup.py checks both against :mod:`db.models`, so they cannot drift from the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# The iCite metrics an article_metrics row holds, as documents and exports name them.
METRIC_FIELDS = (
    "citation_count",
    "relative_citation_ratio",
    "nih_percentile",
    "field_citation_rate",
    "expected_citations_per_year",
    "citations_per_year",
    "apt",
    "is_research_article",
    "is_clinical",
    "provisional",
    "human",
    "animal",
    "molecular_cellular",
    "x_coord",
    "y_coord",
    "cited_by_clinical_count",
    "references_count",
)

# The columns that the driver does not return as SQLAlchemy's types would (SQLite keeps booleans as 0/1
# and timestamps and dates as text), by name: the same name has the same type in every table that
# db.documents reads. Every other column there is text, a whole number or a float.
COLUMN_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "created_at": "datetime",
        "updated_at": "datetime",
        "fetched_at": "datetime",
        "detected_at": "datetime",
        "valid_on": "date",
        "deleted": "bool",
        "in_pubmed": "bool",
        "retracted": "bool",
        "valid": "bool",
        "equal_contrib": "bool",
        "major": "bool",
        "is_research_article": "bool",
        "is_clinical": "bool",
        "provisional": "bool",
    }
)
