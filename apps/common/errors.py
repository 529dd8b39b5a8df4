"""Sort a failure (a probe's, or a command's) into a small, fixed set of categories safe to show anyone.

By type first, by message text only as a last resort:

1. An exception may name its own category with a ``category`` attribute
   (``apps.health.probes.ProbeError``).
2. Its type, anywhere in its chain (``__cause__``/``__context__``, outermost first): socket-level
   errors (``socket.gaierror``, ``ConnectionRefusedError``, ``TimeoutError``), redis-py's exception
   classes, psycopg's ``ConnectionTimeout`` and the ``sqlstate`` of a PostgreSQL error report.
3. The message text, for drivers that give nothing better: libpq reports every failure to
   connect (wrong password, unknown host, refused, server starting up) as one generic error
   without a SQLSTATE, so for those the text is all there is.

psycopg and redis-py are imported lazily and only if installed: this module stays neutral.
"""

from __future__ import annotations

import errno
import socket
from functools import cache
from typing import Any

TIMEOUT = "timeout"
REFUSED = "refused"
AUTH = "auth"
DNS = "dns"
NO_WORKER = "no_worker"
UNKNOWN = "unknown"
CATEGORIES = (TIMEOUT, REFUSED, AUTH, DNS, NO_WORKER, UNKNOWN)

# SQLSTATE class 28 is "invalid authorization specification" (28000, 28P01 invalid_password);
# 57P03 is cannot_connect_now (the server is starting up, shutting down or in recovery).
_SQLSTATE_CLASSES = {"28": AUTH}
_SQLSTATES = {"57P03": REFUSED}

# Fragments of libpq / redis-py messages, the last resort (see the module docstring).
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
    (
        REFUSED,
        (
            "connection refused",
            "error 111",
            "no such file or directory",
            # libpq's text for SQLSTATE 57P03, which it does not pass on when connecting.
            "the database system is starting up",
            "the database system is shutting down",
            "the database system is not yet accepting connections",
            "the database system is not accepting connections",
            "the database system is in recovery mode",
        ),
    ),
    (TIMEOUT, ("timeout", "timed out")),
)


@cache
def _driver_types() -> dict[str, tuple[type[BaseException], ...]]:
    """The drivers' exception classes by category; empty tuples for a driver that is not installed."""
    found: dict[str, tuple[type[BaseException], ...]] = {AUTH: (), TIMEOUT: (), "psycopg": ()}
    try:
        from redis import exceptions as redis_errors
    except ImportError:
        pass
    else:
        # redis-py raises AuthenticationError for NOAUTH and WRONGPASS replies too.
        found[AUTH] += (
            redis_errors.AuthenticationError,
            redis_errors.AuthorizationError,
            redis_errors.NoPermissionError,
        )
        found[TIMEOUT] += (redis_errors.TimeoutError,)
    try:
        import psycopg
    except ImportError:
        pass
    else:
        found[TIMEOUT] += (psycopg.errors.ConnectionTimeout,)
        found["psycopg"] = (psycopg.Error,)
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _by_type(item: BaseException, drivers: dict[str, tuple[type[BaseException], ...]]) -> str | None:
    if isinstance(item, socket.gaierror):
        return DNS
    if isinstance(item, ConnectionRefusedError) or getattr(item, "errno", None) == errno.ECONNREFUSED:
        return REFUSED
    if isinstance(item, (TimeoutError, *drivers[TIMEOUT])):
        return TIMEOUT
    if isinstance(item, drivers[AUTH]):
        return AUTH
    if isinstance(item, drivers["psycopg"]):
        return _by_sqlstate(getattr(item, "sqlstate", None))
    return None


def _by_sqlstate(sqlstate: Any) -> str | None:
    if not isinstance(sqlstate, str):
        return None
    return _SQLSTATES.get(sqlstate) or _SQLSTATE_CLASSES.get(sqlstate[:2])


def categorize(exc: BaseException) -> str:
    """The category of ``exc``: timeout, refused, auth, dns, no_worker or unknown."""
    named = getattr(exc, "category", None)
    if named in CATEGORIES:
        return str(named)
    chain = _chain(exc)
    drivers = _driver_types()
    for item in chain:
        category = _by_type(item, drivers)
        if category is not None:
            return category
    text = " ".join(str(item) for item in chain).lower()
    for category, fragments in _MESSAGE_CATEGORIES:
        if any(fragment in text for fragment in fragments):
            return category
    return UNKNOWN
