"""Validate and normalise article identifiers. Pure functions; each raises InvalidIdentifierError.

- PMID: digits, optionally prefixed ``PMID:``; leading zeros dropped; 0 is not a PMID.
- PMCID: ``PMC`` + digits (at most 10) in any case, or bare digits; a version suffix (``.2``) is dropped.
- DOI: ``10.<registrant>/<suffix>``, with or without ``doi:`` or a doi.org / dx.doi.org URL; compared and
  stored lower-case (DOI names are case-insensitive), so ``normalize_doi`` is idempotent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from harvester.core.errors import InvalidIdentifierError, UsageError

MAX_PMID_DIGITS = 10
MAX_PMCID_DIGITS = 10  # PMC numbers have 7 or 8 digits today; like PMIDs, at most 10
MAX_PMID_VERSION = 999  # PubMed versions records 1, 2, 3...; a Version past this is not a real one
MAX_DOI_LENGTH = 1000

_PMID_PREFIX = re.compile(r"^(?:pmid)\s*:?\s*", re.IGNORECASE)
_PMCID = re.compile(r"^(?:pmc\s*:?\s*)?(\d+)(?:\.\d+)?$", re.IGNORECASE)
_DOI_URL_PREFIX = re.compile(r"^(?:https?://)?(?:dx\.)?doi\.org/", re.IGNORECASE)
_DOI_SCHEME_PREFIX = re.compile(r"^(?:doi|info:doi/)\s*:?\s*", re.IGNORECASE)
_DOI = re.compile(r"^10\.\d{4,9}(?:\.\d+)*/\S+$")


def normalize_pmid(value: str) -> str:
    """Return the PMID as canonical digits ("35350566")."""
    text = _PMID_PREFIX.sub("", value.strip())
    if not text.isascii() or not text.isdigit():
        raise InvalidIdentifierError("PMID", value, "a PMID is a positive whole number")
    text = text.lstrip("0")
    if not text:
        raise InvalidIdentifierError("PMID", value, "a PMID is a positive whole number")
    if len(text) > MAX_PMID_DIGITS:
        raise InvalidIdentifierError("PMID", value, f"a PMID has at most {MAX_PMID_DIGITS} digits")
    return text


def normalize_pmcid(value: str) -> str:
    """Return the PMCID as "PMC" + digits ("PMC8958025")."""
    match = _PMCID.match(value.strip())
    if not match or not value.strip().isascii():
        raise InvalidIdentifierError("PMCID", value, 'expected "PMC" followed by digits, e.g. PMC8958025')
    digits = match.group(1).lstrip("0")
    if not digits:
        raise InvalidIdentifierError("PMCID", value, "a PMCID number is positive")
    if len(digits) > MAX_PMCID_DIGITS:
        raise InvalidIdentifierError("PMCID", value, f"a PMCID has at most {MAX_PMCID_DIGITS} digits")
    return f"PMC{digits}"


def normalize_doi(value: str) -> str:
    """Return the DOI lower-cased and without any ``doi:`` or resolver-URL prefix."""
    text = unicodedata.normalize("NFC", value.strip())
    if _DOI_URL_PREFIX.match(text):
        # A DOI inside a URL may be percent-encoded ("10.1002%2F..."); a bare DOI is taken literally.
        text = unquote(_DOI_URL_PREFIX.sub("", text))
    else:
        text = _DOI_SCHEME_PREFIX.sub("", text)
    text = text.strip()
    if len(text) > MAX_DOI_LENGTH:
        raise InvalidIdentifierError("DOI", value, f"longer than {MAX_DOI_LENGTH} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise InvalidIdentifierError("DOI", value, "contains control characters")
    if not _DOI.match(text):
        raise InvalidIdentifierError(
            "DOI", value, 'expected "10.<registrant>/<suffix>", e.g. 10.3389/fonc.2022.836548'
        )
    # Lower-casing can undo NFC ("ᾶ".upper().lower() is decomposed): normalise again, so it is idempotent.
    return unicodedata.normalize("NFC", text.lower())


def doi_or_none(value: str | None) -> str | None:
    """Normalise a DOI found inside a record; a malformed one there is dropped, not fatal."""
    if not value:
        return None
    try:
        return normalize_doi(value)
    except InvalidIdentifierError:
        return None


def pmcid_or_none(value: str | None) -> str | None:
    """Normalise a PMCID found inside a record; a malformed one there is dropped, not fatal."""
    if not value:
        return None
    try:
        return normalize_pmcid(value)
    except InvalidIdentifierError:
        return None


_ORCID = re.compile(r"(\d{4})-?(\d{4})-?(\d{4})-?(\d{3}[\dX])\s*$", re.IGNORECASE)


def normalize_orcid(value: str | None) -> str | None:
    """Return an ORCID iD in its bare form (0000-0002-1825-0097) from a URL or bare form; else None.

    The ISO 7064 11,2 check digit is verified, so a mistyped iD is not stored as if it were real.
    """
    if not value:
        return None
    match = _ORCID.search(value.strip())
    if not match:
        return None
    digits = "".join(match.groups()).upper()
    total = 0
    for ch in digits[:-1]:
        total = (total + int(ch)) * 2
    check = (12 - total % 11) % 11
    expected = "X" if check == 10 else str(check)
    if digits[-1] != expected:
        return None
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


_ID_SEPARATORS = re.compile(r"[\s,]+")
_LOOKS_LIKE = {
    "pmcid": re.compile(r"^pmc\s*:?\s*\d+(?:\.\d+)?$", re.IGNORECASE),
    "doi": re.compile(
        r"^(?:(?:https?://)?(?:dx\.)?doi\.org/|doi\s*:?\s*|info:doi/)?10\.\d{4,9}/", re.IGNORECASE
    ),
    "pmid": re.compile(r"^(?:pmid\s*:?\s*)?\d+(?:\.\d+)?$", re.IGNORECASE),
}


def split_ids(text: str) -> list[str]:
    """Ids separated by newlines, spaces, tabs or commas (as EDirect reads them), in order, blanks dropped."""
    return [part for part in _ID_SEPARATORS.split(text) if part]


def read_id_file(path: str, read_stdin: Callable[[], str]) -> list[str]:
    """Ids from a file (``-`` = standard input), separated by newlines, spaces, tabs or commas; blank
    lines and ``#`` comments skipped.

    Raises:
        UsageError: the file is missing or cannot be read as text.
    """
    if path == "-":
        text = read_stdin()
    else:
        try:
            # utf-8-sig: a byte-order mark (Windows editors write one) must not spoil the first id
            text = Path(path).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise UsageError(f"id file not found: {path}") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise UsageError(f"id file cannot be read: {path}: {type(exc).__name__}") from None
    ids = []
    for line in text.splitlines():
        # "#" starts a comment at the start of a line or after white space; DOIs may contain "#" themselves
        ids.extend(split_ids(_COMMENT.sub("", line)))
    return ids


_COMMENT = re.compile(r"(?:^|\s)#.*$")


def other_kind(kind: str, value: str) -> str | None:
    """The kind of id ``value`` looks like when it is not ``kind`` ("pmid", "pmcid", "doi"), else None."""
    for other, pattern in _LOOKS_LIKE.items():
        if other != kind and pattern.match(value.strip()):
            return other
    return None
