"""Article history: each changed value written to article_history as JSON, and read back in the notation
of the JSON documents.

Every writer records a change as one row (field, old and new value as JSON, the source that decided it,
the run, the time); an article's first row is its creation (field "created", new value its identifiers).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from db.engine import begin_read, storage_error
from db.models import metadata

HISTORY = metadata.tables["article_history"]


def history_row(
    article_id: int, name: str, old: Any, new: Any, source: str, *, now: datetime, run_id: int | None
) -> dict[str, Any]:
    """An article_history row: ``old`` and ``new`` as JSON (None stays NULL)."""
    return {
        "article_id": article_id,
        "field": name,
        "old_value": _json(old),
        "new_value": _json(new),
        "source": source,
        "run_id": run_id,
        "changed_at": now,
    }


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


# History values are written as merge values; the JSON documents (db.documents) name some keys otherwise.
# Rows are converted when read, so rows stored before the rename read the same (nothing is rewritten).
_DOCUMENT_KEYS = {"licenses": {"license_type": "type", "start_date": "start"}}


def _as_document(name: str, value: Any) -> Any:
    renames = _DOCUMENT_KEYS.get(name)
    if renames is None or not isinstance(value, list):
        return value
    return [
        {renames.get(k, k): v for k, v in item.items()} if isinstance(item, dict) else item for item in value
    ]


def _history_value(name: str, text: str | None) -> Any:
    """A stored old/new value as a JSON value (None for SQL NULL), with the documents' key names."""
    if text is None:
        return None
    try:
        return _as_document(name, json.loads(text))
    except ValueError:  # not JSON: kept as the text it is
        return text


def list_history(engine: Engine, article_id: int) -> list[dict[str, Any]]:
    """The recorded changes of an article, oldest first (its creation first, field "created").

    ``old_value`` and ``new_value`` are JSON values (None where there was none), with the key names of
    the JSON documents (db.documents).

    Raises:
        StorageError: the database could not be read.
    """
    h = HISTORY
    try:
        with begin_read(engine) as conn:
            rows = conn.execute(sa.select(h).where(h.c.article_id == article_id).order_by(h.c.id))
            return [
                {
                    "id": row.id,
                    "field": row.field,
                    "old_value": _history_value(row.field, row.old_value),
                    "new_value": _history_value(row.field, row.new_value),
                    "source": row.source,
                    "run_id": row.run_id,
                    "changed_at": row.changed_at.isoformat(),
                }
                for row in rows
            ]
    except DBAPIError as exc:
        raise storage_error(exc, "cannot read", engine) from exc
