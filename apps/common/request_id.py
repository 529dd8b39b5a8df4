"""What counts as an acceptable caller-supplied request id, and how a fresh one is made."""

from __future__ import annotations

import re
import uuid

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def accept_or_generate(candidate: str | None) -> str:
    """``candidate`` if it is 1-128 characters of ``[A-Za-z0-9._-]``, else a fresh id.

    Anything else (newlines, quotes, 10 KB of text) is dropped rather than cleaned, so a
    header can never smuggle content into the logs.
    """
    if candidate is not None and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex
