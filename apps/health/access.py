"""Who may see health details: a Bearer ``HEALTHCHECK_TOKEN`` or a logged-in staff user.

The token costs nothing to check. The staff check reads the session and the user from the
database, and a probe must answer within its deadline whatever the database does; so that
lookup runs on a single-flight runner (``apps.health.runner``, policy ``REFUSE``: one
long-lived daemon thread per process), starts while the checks run, and is waited for only
until the probe's deadline. A lookup that is late, or arrives while another is still running,
means "no details": a flood of made-up session cookies costs one query at a time and never
delays a probe.
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from importlib import import_module
from typing import Protocol

from django.conf import settings
from django.contrib.auth import get_user
from django.db import connection, transaction
from django.http import HttpRequest

from apps.common.tokens import bearer_token, same_token
from apps.health import runner
from apps.health.probes import CuttableConnection


class Authorisation(Protocol):
    def granted(self, deadline: float) -> bool:
        """Whether details may be shown; waits at most until ``deadline`` (time.monotonic())."""


@dataclass(frozen=True)
class _Decided:
    value: bool

    def granted(self, deadline: float) -> bool:
        return self.value


GRANTED = _Decided(True)
DENIED = _Decided(False)


def has_valid_token(request: HttpRequest) -> bool:
    presented = bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
    return same_token(presented, settings.HEALTHCHECK_TOKEN)


def is_staff_session(session_key: str, timeout: float) -> bool:
    """Whether ``session_key`` belongs to an active staff user (reads the database).

    On PostgreSQL the lookup's statements and lock waits are also bounded server-side, so a
    locked or overloaded session table cannot keep the lookup thread busy for long.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            limit = f"{max(1, int(timeout * 1000))}ms"
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                    [limit, limit],
                )
        holder = HttpRequest()
        holder.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(holder)
        return bool(user.is_active and user.is_staff)


class _StaffLookup:
    """``is_staff_session`` as a runner's work: on its own connection, which ``interrupt()`` can cut."""

    def __init__(self) -> None:
        self._connection = CuttableConnection("default")

    def run(self, session_key: str) -> bool:
        with self._connection.use():
            self._connection.close_old()
            try:
                return is_staff_session(session_key, settings.HEALTHCHECK_TIMEOUT)
            except Exception:  # noqa: BLE001 - no answer is "no details", never an error page
                self._connection.close()
                return False

    def interrupt(self) -> None:
        self._connection.cut()


def _lookups() -> runner.SingleFlightRunner[str, bool]:
    return runner.registered(
        "health-staff-lookup",
        lambda: runner.SingleFlightRunner(_StaffLookup(), name="health-staff-lookup", policy=runner.Policy.REFUSE),
    )


@dataclass(frozen=True)
class _PendingLookup:
    submission: runner.Submission[bool]

    def granted(self, deadline: float) -> bool:
        try:
            return self.submission.future.result(timeout=max(0.0, deadline - time.monotonic())).value
        except FutureTimeout:
            _lookups().give_up(self.submission.future)
            return False


def authorise(request: HttpRequest) -> Authorisation:
    """Start deciding whether this caller may see details; ask ``.granted(deadline)`` later."""
    if has_valid_token(request):
        return GRANTED
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return DENIED
    submission = _lookups().submit(session_key, settings.HEALTHCHECK_TIMEOUT)
    return DENIED if submission is None else _PendingLookup(submission)
