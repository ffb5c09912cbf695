"""The one way this project parses XML from outside: no DTD loading, no network, no entities.

External entities and DTD fetches are never resolved, internal entities are never expanded, and a
document that declares any entity at all is refused with :class:`EntityDeclarationError` (no PubMed,
PMC or NCBI answer declares one; a declaration is an attack or a broken proxy, not data). libxml2's own
amplification limit stops an entity-expansion bomb while the prolog is read, and ``huge_tree`` stays off
so its depth and size limits hold.
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


class EntityDeclarationError(etree.XMLSyntaxError):
    """The document declares entities (``<!ENTITY ...>``), which this project never accepts.

    A subclass of lxml's XMLSyntaxError, so every caller that refuses malformed XML refuses this too.
    """

    def __init__(self, message: str) -> None:
        # lxml's (message, code, line, column, filename); lxml-stubs know only an older signature.
        super().__init__(message, 0, 1, 1, None)  # type: ignore[call-arg, arg-type]


def safe_parser() -> etree.XMLParser:
    """A fresh XMLParser with the safe options (parsers are not thread-safe, so one per use)."""
    return etree.XMLParser(**SAFE_OPTIONS)


def refuse_entity_declarations(tree: etree._ElementTree) -> None:
    """Raise EntityDeclarationError when the document's internal DTD subset declares an entity."""
    dtd: Any = tree.docinfo.internalDTD  # lxml-stubs lack DTD.entities()
    if dtd is None:
        return
    names = [str(entity.name) for entity in dtd.entities()]
    if names:
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise EntityDeclarationError(f"entity declarations are refused (the document declares {shown})")


def parse_document(data: bytes) -> etree._Element:
    """Parse a whole document.

    Raises:
        etree.XMLSyntaxError: it is not well-formed, or (EntityDeclarationError) it declares entities.
    """
    root = etree.fromstring(data, parser=safe_parser())
    refuse_entity_declarations(root.getroottree())
    return root


class _CheckedIterparse:
    """An ``etree.iterparse`` that refuses entity declarations as soon as the prolog has been read."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._checked = False

    def __iter__(self) -> _CheckedIterparse:
        return self

    def __next__(self) -> tuple[str, Any]:
        try:
            event, element = next(self._context)
        except StopIteration:
            self._check(getattr(self._context, "root", None))
            raise
        if not self._checked:
            self._check(element)
        return event, element

    def _check(self, element: Any) -> None:
        if element is not None and not self._checked:
            self._checked = True
            refuse_entity_declarations(element.getroottree())

    @property
    def root(self) -> Any:
        return self._context.root


def iterparse_safe(
    source: str | IO[bytes], *, tag: str | tuple[str, ...] | None = None, events: tuple[str, ...] = ("end",)
) -> Iterator[tuple[str, Any]]:
    """``etree.iterparse`` with the safe options; ``source`` is a path or a binary file object.

    The iterator raises EntityDeclarationError (an XMLSyntaxError) with its first item when the document
    declares entities; ``.root`` is the parsed root, as on lxml's iterparse.
    """
    return _CheckedIterparse(etree.iterparse(source, events=events, tag=tag, **SAFE_OPTIONS))
