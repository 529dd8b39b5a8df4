"""The service probes, shared by the health views, ``check_services`` and the worker canary.

``run_checks(names, timeout)`` answers within ``timeout`` whatever the dependencies do:

- Each probe runs on its own long-lived daemon thread (one per probe per process). Django's
  database connections are per thread, so the database probe keeps reusing one persistent
  connection instead of opening one per probe; a stuck probe can never pin more than one
  thread and one connection, and a daemon thread never keeps a finished command alive.
- Single flight: a caller that arrives while a probe is running joins that run instead of
  starting another, so a burst of probes costs one ``SELECT 1`` and one ``PING``.
- The caller waits at most ``timeout``; a probe still running then is reported as ``timeout``
  and its socket (PostgreSQL's or Redis's) is shut down, so the stuck call ends now rather than
  when TCP gives up (libpq has no client-side query timeout and a 2 s floor on connecting).
- A run that has missed a caller's deadline is late for everyone: callers arriving while it
  is still stuck get ``timeout`` at once (they do not hold a server thread for another full
  deadline), and if it finally succeeds it still reports ``timeout``, never a late "ok".
- ``HEALTHCHECK_CACHE_SECONDS`` > 0 reuses a finished report that long.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any, Protocol

import structlog
from django.conf import settings
from django.db import DatabaseError, connections
from django_redis import get_redis_connection

from apps.common import errors
from apps.health.errors import ProbeError

logger = structlog.get_logger(__name__)

DEFAULT_CHECKS = ("db", "redis")
WORKER_TIMEOUT = 5.0  # a forking worker needs more than a ping to prove itself


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    error: str | None = None  # a category from apps.common.errors, safe for any audience
    detail: str | None = None  # exception text: logs and the operator's terminal only
    facts: dict[str, int] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"


@dataclass(frozen=True)
class HealthReport:
    checks: dict[str, CheckResult]
    finished_at: float  # time.monotonic()

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks.values())

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"


class Probe(Protocol):
    name: str

    def run(self, timeout: float) -> dict[str, int] | None:
        """Raise if the service is unhealthy; may return facts worth reporting."""

    def interrupt(self) -> None:
        """Called from another thread when the caller stopped waiting; end a stuck run."""


class DatabaseProbe:
    """``SELECT 1`` on Django's connection for this thread (persistent, reused)."""

    name = "db"

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._lock = threading.Lock()
        self._running: Any = None

    def run(self, timeout: float) -> None:
        connection = connections[self.alias]
        with self._lock:
            self._running = connection
        try:
            reused = connection.connection is not None
            try:
                self._select_one(connection)
            except DatabaseError:
                with self._lock:  # never close the socket while interrupt() is cutting it
                    connection.close()
                if not reused:
                    raise
                # A persistent connection that died (say, PostgreSQL restarted since the last
                # probe) is not an outage: only a fresh connection failing is.
                self._select_one(connection)
        finally:
            with self._lock:
                self._running = None

    @staticmethod
    def _select_one(connection: Any) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError:
            raise
        except Exception as exc:
            raise DatabaseError(str(exc)) from exc

    def interrupt(self) -> None:
        with self._lock:
            cut_database_connection(self._running)


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


class RedisProbe:
    """``PING`` on a connection of django-redis's pool: the one the app's cache really uses."""

    name = "redis"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Any = None

    def run(self, timeout: float) -> None:
        pool = get_redis_connection("default").connection_pool
        # Connecting is bounded by the pool's socket timeouts (settings.CACHES); the PING is
        # sent on a connection held here, so interrupt() can cut it loose if it hangs.
        connection = pool.get_connection()
        try:
            with self._lock:
                self._running = connection
            connection.send_command("PING")
            reply = connection.read_response()
            if reply not in (b"PONG", "PONG", True):
                raise ProbeError(errors.UNKNOWN, "unexpected reply to PING")
        except BaseException:
            connection.disconnect()  # never hand a half-read reply back to the pool
            raise
        finally:
            with self._lock:
                self._running = None
            pool.release(connection)

    def interrupt(self) -> None:
        with self._lock:
            sock = getattr(self._running, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class WorkerProbe:
    """A live rq worker consumes the queue: a registered worker exists and a canary job runs."""

    name = "worker"

    def __init__(self, queue_name: str = "default") -> None:
        self.queue_name = queue_name

    def run(self, timeout: float) -> dict[str, int]:
        from apps.health import worker_canary

        return worker_canary.round_trip(self.queue_name, timeout)

    def interrupt(self) -> None:
        pass


PROBES: dict[str, Callable[[], Probe]] = {
    "db": DatabaseProbe,
    "redis": RedisProbe,
    "worker": WorkerProbe,
}


class _ProbeRunner:
    """A probe's thread and its single-flight slot."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self._lock = threading.Lock()
        self._inflight: Future[CheckResult] | None = None
        self._interrupted = False
        self._started = 0.0  # time.perf_counter() when the in-flight run was submitted
        self._last_cut = 0.0  # time.perf_counter() of the last interrupt of the in-flight run
        self._requests: SimpleQueue[tuple[Future[CheckResult], float] | None] = SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name=f"health-probe-{probe.name}", daemon=True)
        self.thread.start()

    def submit(self, timeout: float) -> tuple[Future[CheckResult], float | None]:
        """The run to wait for, and when it started if it has already missed a deadline.

        A run that some caller gave up on is stuck: a new caller gets ``timeout`` at once
        rather than waiting on it for another full deadline (and holding a server thread).
        """
        with self._lock:
            if self._inflight is None or self._inflight.done():
                self._inflight = Future()
                self._interrupted = False
                self._started = time.perf_counter()
                self._requests.put((self._inflight, timeout))
            elif self._interrupted and time.perf_counter() - self._last_cut > timeout:
                # Still stuck a whole deadline after the last cut (which may have landed while
                # the probe was still connecting, with no socket to cut yet): cut again.
                self._cut()
            return self._inflight, (self._started if self._interrupted else None)

    def give_up(self, future: Future[CheckResult]) -> None:
        with self._lock:
            if future is not self._inflight or future.done() or self._interrupted:
                return
            self._interrupted = True
            self._cut()

    def _cut(self) -> None:
        # Called with self._lock held, so no new run can start meanwhile: the cut can only
        # reach the run that missed its deadline.
        self._last_cut = time.perf_counter()
        self.probe.interrupt()

    def stop(self) -> None:
        """Let the thread finish its current run, close its connections and exit."""
        self._requests.put(None)

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            future, timeout = request
            future.set_result(self._run_once(timeout))
        connections.close_all()

    def _run_once(self, timeout: float) -> CheckResult:
        name = self.probe.name
        started = time.perf_counter()
        try:
            facts = self.probe.run(timeout) or {}
        except Exception as exc:  # noqa: BLE001 - any failure is the probe's answer
            latency = _ms(time.perf_counter() - started)
            facts = getattr(exc, "facts", None) or {}
            category = errors.TIMEOUT if self._interrupted else errors.categorize(exc)
            detail = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
            logger.debug("health_probe_failed", check=name, error=category, detail=detail, latency_ms=latency)
            _release_frames(exc)
            return CheckResult(name, False, latency, category, detail, facts)
        latency = _ms(time.perf_counter() - started)
        if self._interrupted:
            # A caller already gave up on this run: an answer this late is a timeout, not "ok"
            # (a caller that joined the run just before it ended must not report it healthy).
            return CheckResult(name, False, latency, errors.TIMEOUT, "answered after the deadline", facts)
        return CheckResult(name, True, latency, facts=facts)


def _release_frames(exc: BaseException) -> None:
    """Free what the failed attempt's frames still hold, now rather than at the next GC.

    psycopg's ``connect()`` keeps the half-open connection in a local of a frame that its own
    timeout exception references (a reference cycle): against a black hole every attempt would
    leave a socket open until the garbage collector runs.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


_runners: dict[str, _ProbeRunner] = {}
_runners_pid = 0
_state_lock = threading.Lock()
_last_status: dict[str, str] = {}
_cached: dict[tuple[str, ...], HealthReport] = {}


def _runner(name: str) -> _ProbeRunner:
    global _runners_pid
    with _state_lock:
        if _runners_pid != os.getpid():
            # Threads do not survive fork (gunicorn --preload, rq's work horse): start afresh.
            _runners.clear()
            _runners_pid = os.getpid()
        runner = _runners.get(name)
        if runner is None:
            runner = _runners[name] = _ProbeRunner(PROBES[name]())
        return runner


def shutdown(wait_seconds: float = 1.0) -> None:
    """Stop this process's probe threads and close their database connections.

    For process exit hooks and tests: a probe thread's persistent connection would otherwise
    stay open until the process dies (and block ``DROP DATABASE`` in a test run).
    """
    with _state_lock:
        runners = list(_runners.values()) if _runners_pid == os.getpid() else []
        _runners.clear()
        _cached.clear()
    for runner in runners:
        runner.stop()
    for runner in runners:
        runner.thread.join(wait_seconds)


def validate_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple, or ``ValueError`` naming the unknown ones."""
    chosen = tuple(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in PROBES]
    if unknown or not chosen:
        raise ValueError(f"unknown check(s): {', '.join(unknown) or '(none)'}; choose from {', '.join(PROBES)}")
    return chosen


def run_checks(
    names: Iterable[str] = DEFAULT_CHECKS, timeout: float | None = None, *, use_cache: bool = True
) -> HealthReport:
    """Run the named probes concurrently and return within ``timeout`` seconds.

    ``use_cache=False`` always runs the probes (a caller that retries until healthy must not be
    handed its own earlier failure from the ``HEALTHCHECK_CACHE_SECONDS`` window).
    """
    chosen = validate_names(names)
    if timeout is None:
        timeout = settings.HEALTHCHECK_TIMEOUT
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError("timeout must be a positive number of seconds")

    cache_seconds: float = settings.HEALTHCHECK_CACHE_SECONDS if use_cache else 0
    if cache_seconds > 0:
        cached = _cached.get(chosen)
        if cached is not None and time.monotonic() - cached.finished_at < cache_seconds:
            return cached

    runners = {name: _runner(name) for name in chosen}
    submitted = {name: runner.submit(timeout) for name, runner in runners.items()}
    pending = [future for future, late_since in submitted.values() if late_since is None]
    deadline = time.monotonic() + timeout
    for future in pending:
        # One future after another: cheaper than concurrent.futures.wait() on this hot path.
        with contextlib.suppress(FutureTimeout):
            future.result(timeout=max(0.0, deadline - time.monotonic()))
    results: dict[str, CheckResult] = {}
    for name, (future, late_since) in submitted.items():
        if future.done():
            results[name] = future.result()
        elif late_since is not None:
            stuck = _ms(time.perf_counter() - late_since)
            results[name] = CheckResult(name, False, stuck, errors.TIMEOUT, "still running past an earlier deadline")
        else:
            runners[name].give_up(future)
            results[name] = CheckResult(name, False, _ms(timeout), errors.TIMEOUT, "no answer before the deadline")

    report = HealthReport(results, time.monotonic())
    if cache_seconds > 0:
        _cached[chosen] = report
    _log_changes(report)
    return report


def _log_changes(report: HealthReport) -> None:
    """One line when a check changes state: WARNING when it fails, INFO when it recovers."""
    for name, result in report.checks.items():
        with _state_lock:
            previous = _last_status.get(name)
            _last_status[name] = result.status
        if previous == result.status or (previous is None and result.ok):
            continue
        if result.ok:
            logger.info("health_check_recovered", check=name, latency_ms=result.latency_ms)
        else:
            logger.warning(
                "health_check_failed",
                check=name,
                error=result.error,
                detail=result.detail,
                latency_ms=result.latency_ms,
            )
