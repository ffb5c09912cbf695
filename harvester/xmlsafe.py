"""The one way this project parses XML from outside: no DTD loading, no network, no entity expansion.

External entities and DTD fetches are refused and internal entities are left unexpanded, so an
entity-expansion bomb costs nothing; ``huge_tree`` stays off so libxml2's depth and size limits hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from lxml import etree

SAFE_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
}


def safe_parser() -> etree.XMLParser:
    """A fresh XMLParser with the safe options (parsers are not thread-safe, so one per use)."""
    return etree.XMLParser(**SAFE_OPTIONS)


def parse_document(data: bytes) -> etree._Element:
    """Parse a whole document; raises ``etree.XMLSyntaxError`` when it is not well-formed."""
    return etree.fromstring(data, parser=safe_parser())


def iterparse_safe(
    source: str | IO[bytes], *, tag: str | tuple[str, ...] | None = None, events: tuple[str, ...] = ("end",)
) -> Iterator[tuple[str, Any]]:
    """``etree.iterparse`` with the safe options; ``source`` is a path or a binary file object."""
    return etree.iterparse(source, events=events, tag=tag, **SAFE_OPTIONS)  # type: ignore[no-any-return]
