"""Who may see health details: a Bearer ``HEALTHCHECK_TOKEN`` or a logged-in staff user.

The token costs nothing to check. The staff check reads the session and the user from the
database, and a probe must answer within its deadline whatever the database does; so that
lookup runs on one long-lived daemon thread per process, starts while the checks run, and is
waited for only until the probe's deadline. A lookup that is late, or arrives while another is
still running, means "no details": a flood of made-up session cookies costs one query at a
time and never delays a probe.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from importlib import import_module
from queue import SimpleQueue
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections, connection, connections, transaction
from django.http import HttpRequest

from apps.health.checks import cut_database_connection


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
    token: str | None = settings.HEALTHCHECK_TOKEN
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


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


class _StaffLookups:
    """One daemon thread that answers staff-session lookups, one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._requests: SimpleQueue[tuple[str, Future[bool]] | None] = SimpleQueue()
        self._current: Future[bool] | None = None  # the lookup in progress, if any
        self._started = 0.0  # time.monotonic() when it was submitted
        self._last_cut = 0.0
        self._connection: Any = None

    def submit(self, session_key: str) -> Future[bool] | None:
        """Queue a lookup, or ``None`` (deny) while another one is still running."""
        timeout: float = settings.HEALTHCHECK_TIMEOUT
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                # First use in this process (threads do not survive gunicorn's fork), or the
                # thread was stopped: start a fresh one with a queue of its own.
                self._pid, self._current = os.getpid(), None
                self._requests = SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._requests,), name="health-staff-lookup", daemon=True
                )
                self._thread.start()
            now = time.monotonic()
            if self._current is not None:
                if now - self._started > timeout and now - self._last_cut > timeout:
                    self._cut()  # stuck past a whole deadline: an earlier cut found no socket yet
                return None
            future: Future[bool] = Future()
            self._current, self._started = future, now
            self._requests.put((session_key, future))
            return future

    def give_up(self, future: Future[bool]) -> None:
        """The caller stopped waiting: end the lookup if it is stuck on the database."""
        with self._lock:
            if future is self._current:
                self._cut()

    def _cut(self) -> None:
        # With self._lock held: the thread closes its connection under the same lock, so the
        # socket cut is the stuck lookup's and nobody else's.
        self._last_cut = time.monotonic()
        cut_database_connection(self._connection)

    def stop(self, wait_seconds: float) -> None:
        """Let the thread finish its lookup, close its database connection and exit."""
        with self._lock:
            thread, self._thread, self._pid = self._thread, None, 0
            if thread is not None:
                self._requests.put(None)  # into the stopping thread's own queue
                if self._current is not None:
                    self._cut()
        if thread is not None:
            thread.join(wait_seconds)

    def _serve(self, requests: SimpleQueue[tuple[str, Future[bool]] | None]) -> None:
        self._connection = connections["default"]
        timeout: float = settings.HEALTHCHECK_TIMEOUT
        while (request := requests.get()) is not None:
            session_key, future = request
            # This thread is outside Django's request cycle: drop a connection that broke
            # (or aged past CONN_MAX_AGE) since the last lookup, as request_started would.
            with self._lock:
                close_old_connections()
            try:
                allowed = is_staff_session(session_key, timeout)
            except Exception:  # noqa: BLE001 - no answer is "no details", never an error page
                allowed = False
                with self._lock:
                    connections["default"].close()
            with self._lock:
                self._current = None
            future.set_result(allowed)
        with self._lock:
            connections.close_all()


_lookups = _StaffLookups()


def shutdown(wait_seconds: float = 1.0) -> None:
    """Stop the lookup thread and close its connection (process exit hooks, tests)."""
    _lookups.stop(wait_seconds)


@dataclass(frozen=True)
class _PendingLookup:
    future: Future[bool]

    def granted(self, deadline: float) -> bool:
        try:
            return self.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            _lookups.give_up(self.future)
            return False


def authorise(request: HttpRequest) -> Authorisation:
    """Start deciding whether this caller may see details; ask ``.granted(deadline)`` later."""
    if has_valid_token(request):
        return GRANTED
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return DENIED
    future = _lookups.submit(session_key)
    return DENIED if future is None else _PendingLookup(future)
