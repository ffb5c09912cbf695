"""Database URLs: the plain SQLite case read without SQLAlchemy, every other URL through its ``make_url``.

Importing SQLAlchemy costs a third of a second of CPU, so a command that only reads a SQLite file
(``harvest show``) must not need it to read its settings. A URL is *plain* when it is exactly
``sqlite:///PATH`` with PATH made only of ASCII letters, digits, spaces and ``_ . - + /``: then
SQLAlchemy's ``make_url`` gives PATH as the database, no password, and renders the URL back unchanged
(tests/test_startup.py holds this), so the answers below are the ones ``make_url`` would give.
"""

from __future__ import annotations

import re

_PLAIN_SQLITE = re.compile(r"sqlite:///([A-Za-z0-9_.+/ -]+)")


def plain_sqlite_path(url: str) -> str | None:
    """The database of a plain ``sqlite:///PATH`` URL (PATH as SQLAlchemy reads it), else None."""
    match = _PLAIN_SQLITE.fullmatch(url)
    return match.group(1) if match else None


def url_password(url: str) -> str | None:
    """The password in a database URL; None when it has none or cannot be parsed."""
    if "://" not in url or "@" not in url:  # make_url refuses a URL without "://"; a password ends at "@"
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except ArgumentError:
        return None
    return str(password) if password else None


def url_display(url: str) -> str:
    """The URL as SQLAlchemy renders it with the password masked (``***``)."""
    if plain_sqlite_path(url) is not None:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
