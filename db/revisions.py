"""The migration files as the code ships them, read without Alembic: where they are and which is head.

Importing Alembic and every migration takes 0.2 s, and a process that only reads a database at head
never needs them: it compares the database's ``alembic_version`` with :func:`fast_head_revision`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import migrations


def _migrations_dir() -> Path:
    # __path__ rather than __file__: an editable install may present the package as a namespace package.
    for entry in migrations.__path__:
        if (Path(entry) / "env.py").is_file():
            return Path(entry).resolve()
    raise ImportError("the migrations package has no env.py")  # pragma: no cover - a broken install


MIGRATIONS_DIR = _migrations_dir()

_REVISION_LINE = re.compile(r"""^(down_revision|revision)\b[^=\n]*=\s*(?:["']([^"']+)["']|None)\s*$""", re.M)


@functools.cache
def fast_head_revision() -> str | None:
    """The head revision read from the migration files' ``revision``/``down_revision`` lines, without
    importing Alembic (0.2 s a process that only reads); None where the files do not make it plain (then
    the callers ask Alembic)."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict((m[0], m[1] or None) for m in _REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found or "down_revision" not in found or found["revision"] is None:
            return None
        revisions[found["revision"]] = found["down_revision"]
    heads = set(revisions) - {down for down in revisions.values() if down}
    return heads.pop() if len(heads) == 1 else None
