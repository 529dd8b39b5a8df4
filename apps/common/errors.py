"""Sort a failure (a probe's, or a command's) into a small, fixed set of categories safe to show anyone.

An exception may name its own category with a ``category`` attribute (``apps.health.probes.ProbeError``).
"""

from __future__ import annotations

import errno
import socket

TIMEOUT = "timeout"
REFUSED = "refused"
AUTH = "auth"
DNS = "dns"
NO_WORKER = "no_worker"
UNKNOWN = "unknown"
CATEGORIES = (TIMEOUT, REFUSED, AUTH, DNS, NO_WORKER, UNKNOWN)

# Fragments of libpq / redis-py messages: these drivers report most failures as one generic
# exception type whose text says what happened.
_MESSAGE_CATEGORIES = (
    (
        AUTH,
        (
            "password authentication failed",
            "no password supplied",
            "noauth",
            "wrongpass",
            "invalid username-password",
            "authentication",
            'role "',
            "pg_hba.conf",
        ),
    ),
    (
        DNS,
        (
            "could not translate host name",
            "name or service not known",
            "temporary failure in name resolution",
            "nodename nor servname",
            "failed to resolve host",
            "no address associated",
        ),
    ),
    (REFUSED, ("connection refused", "error 111", "no such file or directory")),
    (TIMEOUT, ("timeout", "timed out")),
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def categorize(exc: BaseException) -> str:
    """The category of ``exc``: timeout, refused, auth, dns, no_worker or unknown."""
    named = getattr(exc, "category", None)
    if named in CATEGORIES:
        return str(named)
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, socket.gaierror):
            return DNS
        if isinstance(item, ConnectionRefusedError) or getattr(item, "errno", None) == errno.ECONNREFUSED:
            return REFUSED
        if isinstance(item, (TimeoutError, socket.timeout)):
            return TIMEOUT
    for item in chain:
        name = type(item).__name__
        if name in ("TimeoutError", "ConnectionTimeout"):
            return TIMEOUT
        if name.startswith("Authentication") or name in ("InvalidPassword", "InvalidAuthorizationSpecification"):
            return AUTH
    text = " ".join(str(item) for item in chain).lower()
    for category, fragments in _MESSAGE_CATEGORIES:
        if any(fragment in text for fragment in fragments):
            return category
    return UNKNOWN
