"""Where the service's dependencies are, said without their secrets: for log lines and error pages."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_QUERY_VALUE = re.compile(r"((?:^|&)[^=&]*(?:password|secret|token)[^=&]*=)[^&]*", re.IGNORECASE)
# Keys whose values are secrets wherever they appear (Django's DATABASES entry, OPTIONS, a dict of kwargs).
_SECRET_KEY_NAME = re.compile(r"pass|secret|token|key|auth|credential|signature", re.IGNORECASE)


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


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def mask_urls_in(text: str) -> str:
    """``text`` (a message, a ``repr``) with the password of every URL inside it masked."""
    return _URL_IN_TEXT.sub(lambda url: mask_url(url.group()), text) if "://" in text else text


def has_credentials(text: str) -> bool:
    """Whether ``text`` is a URL that carries a password (in its user info or its query)."""
    return "://" in text and mask_url(text) != text


def mask_secrets(value: Any) -> Any:
    """``value`` with every password-bearing part replaced: URLs masked, secret-named keys of
    mappings (``PASSWORD``, ``sslpassword``, ``token``) hidden, containers walked."""
    if isinstance(value, str):
        return mask_url(value) if has_credentials(value) else value
    if isinstance(value, Mapping):
        return {
            key: MASK if isinstance(key, str) and _SECRET_KEY_NAME.search(key) and item else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secrets(item) for item in value)
    return value


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
