"""The probe classes ``HEALTH_CHECKS`` names, and how a stuck probe's socket is cut.

A probe is constructed with its options as keyword arguments (``DatabaseProbe(alias="second")``);
construction does no I/O and raises ``TypeError`` or ``ValueError`` for bad options, so that
``manage.py check`` can report them. ``run(timeout)`` raises if the service is unhealthy and may
return facts worth reporting; ``interrupt()`` is called from another thread when the caller
stopped waiting, and must end a stuck run (shut its socket down) without blocking.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django_redis import get_redis_connection

from apps.common import errors
from apps.common.cuttable import Cuttable


class ProbeError(Exception):
    """A probe failed in a way it can name itself (for example: no worker is listening)."""

    def __init__(self, category: str, message: str, facts: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.category = category
        self.facts = facts


class Probe(Protocol):
    def run(self, timeout: float) -> dict[str, int] | None:
        """Raise if the service is unhealthy; may return facts worth reporting."""

    def interrupt(self) -> None:
        """Called from another thread when the caller stopped waiting; end a stuck run."""


def cut_database_connection(connection: Any) -> None:
    """Shut down the socket under a Django database connection that another thread is stuck on.

    libpq has no client-side query timeout: a server that stops answering mid-reply keeps the
    waiting thread blocked until TCP gives up. Shutting the socket down makes that thread's
    read fail now; Django then discards the connection and the next use reconnects.
    """
    pgconn = getattr(getattr(connection, "connection", None), "pgconn", None)
    if pgconn is None:
        return  # not connected, or SQLite (no peer to hang on)
    try:
        with socket.socket(fileno=os.dup(pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001, S110 - already closed (OSError, psycopg's error): nothing is stuck
        pass


class CuttableConnection:
    """The Django connection (of one alias) that a run is using, so another thread can cut it safely.

    The cut works on a duplicate of the socket's descriptor number: it must never run while the
    owning thread closes that connection, or the number could already name someone else's
    socket. Using, closing and cutting all go through one lock.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._in_use: BaseDatabaseWrapper | None = None

    @contextlib.contextmanager
    def use(self) -> Iterator[BaseDatabaseWrapper]:
        """This thread's connection of the alias, cuttable until the block ends."""
        connection = connections[self.alias]
        with self._lock:
            self._in_use = connection
        try:
            yield connection
        finally:
            with self._lock:
                self._in_use = None

    def close(self) -> None:
        with self._lock:
            connections[self.alias].close()

    def close_old(self) -> None:
        """Drop this thread's connections that broke or aged past ``CONN_MAX_AGE``.

        A runner's thread is outside Django's request cycle, so nobody else does what
        ``request_started`` would.
        """
        with self._lock:
            close_old_connections()

    def cut(self) -> None:
        with self._lock:
            cut_database_connection(self._in_use)


class DatabaseProbe:
    """``SELECT 1`` on Django's connection for this thread (persistent, reused) to a ``DATABASES`` alias."""

    def __init__(self, alias: str = "default") -> None:
        if alias not in settings.DATABASES:
            raise ValueError(f"{alias!r} is not a DATABASES alias")
        self.alias = alias
        self._connection = CuttableConnection(alias)

    def run(self, timeout: float) -> None:
        with self._connection.use() as connection:
            reused = connection.connection is not None
            try:
                self._select_one(connection)
            except DatabaseError:
                self._connection.close()  # never while interrupt() is cutting it
                if not reused:
                    raise
                # A persistent connection that died (say, PostgreSQL restarted since the last
                # probe) is not an outage: only a fresh connection failing is.
                self._select_one(connection)

    @staticmethod
    def _select_one(connection: BaseDatabaseWrapper) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError:
            raise
        except Exception as exc:
            raise DatabaseError(str(exc)) from exc

    def interrupt(self) -> None:
        self._connection.cut()


class RedisProbe:
    """``PING`` on a connection of django-redis's pool for a ``CACHES`` alias: the one the app really uses."""

    def __init__(self, alias: str = "default") -> None:
        cache = settings.CACHES.get(alias)
        if cache is None:
            raise ValueError(f"{alias!r} is not a CACHES alias")
        if not str(cache.get("BACKEND", "")).startswith("django_redis."):
            raise ValueError(f"CACHES alias {alias!r} is not a django-redis cache")
        self.alias = alias
        self._connection = Cuttable()

    def run(self, timeout: float) -> None:
        pool = get_redis_connection(self.alias).connection_pool
        # Connecting is bounded by the pool's socket timeouts (settings.CACHES); the PING is
        # sent on a connection held here, so interrupt() can cut it loose if it hangs.
        connection = pool.get_connection()
        try:
            with self._connection.holding(connection):
                connection.send_command("PING")
                reply = connection.read_response()
            if reply not in (b"PONG", "PONG", True):
                raise ProbeError(errors.UNKNOWN, "unexpected reply to PING")
        finally:
            pool.release(connection)  # disconnected by holding() if the PING failed

    def interrupt(self) -> None:
        self._connection.cut()


class WorkerProbe:
    """A live rq worker consumes the queue: a registered worker exists and a canary job runs."""

    def __init__(self, queue: str = "default") -> None:
        if queue not in settings.RQ_QUEUES:
            raise ValueError(f"{queue!r} is not an RQ_QUEUES queue")
        self.queue = queue

    def run(self, timeout: float) -> dict[str, int]:
        from apps.health import worker_canary

        return worker_canary.round_trip(self.queue, timeout)

    def interrupt(self) -> None:
        pass
