"""Bounded numbers and bounded JSON: service bytes never turn into an uncaught exception.

Python refuses ``int()`` of more than 4,300 digits (ValueError), ``float()`` of an int past 1e308
(OverflowError), and its JSON reader raises RecursionError for nesting past about 1,000 levels. Parsers
read every number of a payload through :func:`bounded_int` and every JSON body through :func:`load_json`,
so an absurd value is either out of range (the parser's rule for that place applies) or a ParseError.
"""

from __future__ import annotations

import json
from typing import Any

from harvester.core.errors import ParseError

MAX_JSON_DEPTH = 64  # Crossref works nest about 6 levels deep; the ID Converter's answers 3
MAX_JSON_INT_DIGITS = 19  # a JSON integer longer than this (past 64 bits) is kept as its digit text


def bounded_int(text: str | None, low: int, high: int) -> int | None:
    """ASCII digits (spaces around allowed) as an int within ``low..high``; None for anything else.

    The digit count is checked before ``int()``, so a string of any length costs nothing and raises
    nothing.
    """
    if text is None:
        return None
    value = text.strip()
    if not value or not value.isascii() or not value.isdigit():
        return None
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(high)):
        return None
    number = int(digits)
    return number if low <= number <= high else None


class LongNumber(str):
    """A JSON integer too long for a 64-bit column, kept as its digits (see :func:`load_json`)."""

    __slots__ = ()


def _parse_int(digits: str) -> int | str:
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        return LongNumber(digits)
    return int(digits)


def load_json(body: bytes | str, *, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a JSON answer: integers past 64 bits come as :class:`LongNumber` text, never as int.

    Raises:
        ParseError: not JSON (or not UTF-8), or nested deeper than ``max_depth`` levels.
    """
    if isinstance(body, bytes) and body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        data = json.loads(body, parse_int=_parse_int)
    except RecursionError:
        raise ParseError(f"{source}: the answer is JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"{source}: the answer is not JSON ({type(exc).__name__}: {exc})") from None
    check_depth(data, source=source, max_depth=max_depth)
    return data


def check_depth(data: Any, *, source: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise ParseError when lists and objects in ``data`` nest deeper than ``max_depth`` (no recursion).

    Raises:
        ParseError: nested too deep.
    """
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise ParseError(f"{source}: JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
