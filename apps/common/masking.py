"""Where the service's dependencies are, said without their secrets: for log lines and error pages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_QUERY_VALUE = re.compile(r"((?:^|&)[^=&]*(?:password|secret|token)[^=&]*=)[^&]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with its passwords (in the user info or a ``password=`` query) as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if parts.query:
        # ssl_password (redis-py), sslpassword (libpq), token=...: any such key, value replaced in place.
        parts = parts._replace(query=_SECRET_QUERY_VALUE.sub(r"\1***", parts.query))
    masked = urlunsplit(parts)
    if not parts.netloc and url.startswith(f"{parts.scheme}://"):
        masked = masked.replace(":", "://", 1)  # urlunsplit drops the empty authority of unix:///
    return masked


def service_fields(database: Mapping[str, Any], redis_url: str) -> dict[str, str]:
    """Where the service's dependencies are, without their passwords: for start-up log lines."""
    if database.get("ENGINE", "").endswith("sqlite3"):
        database_description = f"sqlite:///{database.get('NAME')}"
    else:
        user = database.get("USER") or ""
        secret = ":***" if database.get("PASSWORD") else ""
        at = f"{user}{secret}@" if user or secret else ""
        database_description = f"postgres://{at}{database.get('HOST')}:{database.get('PORT')}/{database.get('NAME')}"
    return {"database": database_description, "redis": mask_url(redis_url)}
