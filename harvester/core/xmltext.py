"""Text and value helpers shared by the XML parsers (PubMed, PMC JATS): pure, and tuned for speed.

Both parsers meet the same things: XML whitespace to collapse (and only XML whitespace: a no-break space
in "1.73 m²" is content), MathML to read as text, month names and numbers, days that must exist, and
DOIs that are nearly always already clean.
"""

from __future__ import annotations

import calendar
import re

from lxml import etree

from harvester.core.bounds import bounded_int
from harvester.core.errors import InvalidIdentifierError
from harvester.core.ids import (
    MAX_DOI_LENGTH,
    MAX_PMID_DIGITS,
    doi_or_none as _doi_or_none_slow,
    normalize_pmid,
)
from harvester.core.records import MONTHS

MATHML_PREFIX = "{http://www.w3.org/1998/Math/MathML}"
MATHML_KEEP_SPACE = frozenset({MATHML_PREFIX + "mtext", MATHML_PREFIX + "ms"})
_PLAIN_DOI = re.compile(r"10\.\d{4,9}(?:\.\d+)*/[!-~]+\Z")
_XML_WHITESPACE = re.compile(r"[ \t\r\n]+")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def collapse(raw: str) -> str | None:
    """Collapse runs of XML whitespace to one space and strip; None when nothing is left."""
    if "\n" in raw or "\t" in raw or "  " in raw or "\r" in raw:
        if raw.isascii():
            # For ASCII, str.split() splits on exactly the XML whitespace characters (the others it knows
            # are not allowed in XML 1.0), and it is several times faster than the regex.
            return " ".join(raw.split()) or None
        # Only XML whitespace: a no-break or thin space in "1.73 m²" or "P < 0.001" is content.
        raw = _XML_WHITESPACE.sub(" ", raw)
    # Here every whitespace run is a single space: only the ends may need trimming.
    return raw.strip(" ") or None


def math_text(math: etree._Element) -> str:
    """A MathML island as its token text; whitespace between tokens is layout, except inside mtext."""
    parts: list[str] = []
    for node in math.iter():
        text = node.text
        if text and isinstance(node.tag, str):
            parts.append(text if node.tag in MATHML_KEEP_SPACE else text.strip())
    return "".join(parts)


def is_number(value: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²", which int() refuses."""
    return value.isascii() and value.isdigit()


def month_number(value: str) -> int | None:
    """1-12 from "Mar", "March", "03" or "3"; None otherwise."""
    value = value.strip()
    if is_number(value):
        return bounded_int(value, 1, 12)  # "13" or 5,000 digits: no month
    if len(value) >= 3 and value.isalpha():
        return MONTHS.get(value[:3].lower())
    return None


def valid_day(year: int, month: int, value: str) -> int | None:
    """The day as a number when it exists in that month; None otherwise."""
    last = 29 if month == 2 and calendar.isleap(year) else _DAYS_IN_MONTH[month - 1]
    return bounded_int(value, 1, last)


def doi_or_none(value: str | None) -> str | None:
    """ids.doi_or_none, with a shortcut for the plain ASCII DOI that nearly every record carries.

    For such a value (no prefix, no control characters, short enough) normalize_doi does no more than
    lower-case it; a test holds the two to the same answer for any input.
    """
    if value and len(value) <= MAX_DOI_LENGTH and value.isascii() and _PLAIN_DOI.match(value):
        return value.lower()
    return _doi_or_none_slow(value)


def attr(elem: etree._Element, name: str) -> str | None:
    """An attribute's value stripped, or None when absent or blank."""
    value = elem.get(name)
    if value is None:
        return None
    return value.strip() or None


def pmid_or_none(value: str | None) -> str | None:
    """Normalise a PMID found inside a record; a malformed one is dropped."""
    if not value:
        return None
    if value.isascii() and value.isdigit() and value[0] != "0" and len(value) <= MAX_PMID_DIGITS:
        return value  # already canonical, which nearly every PMID in PubMed XML is
    try:
        return normalize_pmid(value)
    except InvalidIdentifierError:
        return None
