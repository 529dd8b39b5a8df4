"""Hardening rules shared by the environment's validation (``config.rules``) and the deploy checks.

Each function returns the broken rule as one line (never the value: values are secrets), or
``None``. The environment refuses a value at start-up; ``manage.py check --deploy`` applies the
same rules to the settings themselves, however they were made.
"""

from __future__ import annotations

from collections.abc import Iterable

from apps.common.probe_paths import EARLY_PATHS

MIN_TOKEN_LENGTH = 32
# Django's own check (security.W009) wants at least this many distinct characters in a key.
MIN_SECRET_KEY_DISTINCT = 5


def token_problem(token: str) -> str | None:
    """A Bearer token: long enough not to be guessed, and text that an HTTP header can carry."""
    if len(token) < MIN_TOKEN_LENGTH or not all("!" <= character <= "~" for character in token):
        return f"must be at least {MIN_TOKEN_LENGTH} characters of printable ASCII, without spaces"
    return None


def secret_key_problem(key: str) -> str | None:
    """Django's deploy rules for ``SECRET_KEY`` (security.W009), applied when DEBUG is false."""
    if len(key) < 50:
        return "must be at least 50 characters when DJANGO_DEBUG is false"
    if len(set(key)) < MIN_SECRET_KEY_DISTINCT:
        return f"must have at least {MIN_SECRET_KEY_DISTINCT} distinct characters when DJANGO_DEBUG is false"
    if key.startswith("django-insecure"):
        return "must not start with django-insecure when DJANGO_DEBUG is false"
    return None


def allowed_hosts_problem(hosts: Iterable[str]) -> str | None:
    """With DEBUG false the hosts are named: ``*`` would accept any Host header (and its links)."""
    if "*" in hosts:
        return "must name the hosts, not *, when DJANGO_DEBUG is false"
    return None


def admin_url_problem(path: str) -> str | None:
    """The admin's path (``ops/admin/``): no ``.`` or ``..`` segment, not under a probe path or ``/metrics``."""
    segments = path.strip("/").split("/")
    if any(segment in (".", "..") for segment in segments):
        return "must not contain . or .. segments"
    if segments[0] in EARLY_PATHS:
        return f"must not start with a probe path ({', '.join(EARLY_PATHS)})"
    return None
