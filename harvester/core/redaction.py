"""Secrets out of text: every form a secret can take in a URL or message becomes ``***``."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "redact"]

REDACTED = "***"


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret (raw or URL-encoded) in ``text`` with ``***``."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
    # Longest first, so a secret that contains another is replaced whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text
