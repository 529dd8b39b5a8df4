"""Deadline-bounded, single-flight background work: the one mechanism under the probes and the staff lookups.

A runner owns one long-lived daemon thread and a queue of requests for one piece of work (an
object with ``run(argument)`` and ``interrupt()``):

- One thread, always the same: Django's database connections are per thread, so the work keeps
  reusing one persistent connection instead of opening one per run, and a stuck run can never
  pin more than one thread and one connection. A daemon thread never keeps a finished command
  alive.
- Callers wait on a future until their own deadline, then ``give_up``: the runner cuts the run
  (``work.interrupt()``: shut its socket down) so that it ends now rather than when TCP gives up.
  A cut can land before there is anything to cut (the run is still connecting), so a run still
  stuck a whole deadline after the last cut is cut again by the next caller.
- Every cut happens with the runner's lock held, and a new run starts only under that lock: a
  cut can only reach the run that was given up on.

Two policies for a caller that arrives while a run is in flight:

- ``JOIN`` (the probes): wait for that run too, so a burst of callers costs one run. A run some
  caller gave up on is *late*: later callers are told so at once (``Submission.late_since``)
  instead of holding a server thread for another whole deadline, and however it ends its
  ``Outcome`` says ``late``.
- ``REFUSE`` (the staff lookups): get ``None`` at once, so a flood costs one run at a time. No
  later caller waits on the run in flight, so a run busy longer than a deadline counts as stuck
  even if its own caller never gave up.

Threads do not survive fork (gunicorn's workers, rq's work horse): after a fork, the next submit
starts a fresh queue and thread, and never touches the parent's run. ``stop_all`` stops every
runner of this process, and runs at interpreter exit (a gunicorn worker exits through
``sys.exit``, so that includes its graceful exit): each thread closes its database connections.
"""

from __future__ import annotations

import atexit
import enum
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, Generic, Protocol, TypeVar

import structlog
from django.db import connections

A = TypeVar("A")
R = TypeVar("R")
A_contra = TypeVar("A_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

logger = structlog.get_logger(__name__)

# At exit, an idle thread needs milliseconds to close its connections: wait that long at most.
EXIT_WAIT_SECONDS = 0.5


class Policy(enum.Enum):
    JOIN = "join"
    REFUSE = "refuse"


class Work(Protocol[A_contra, R_co]):
    def run(self, argument: A_contra) -> R_co:
        """Do the work once, on the runner's thread; return the answer (failures included)."""

    def interrupt(self) -> None:
        """Called from another thread, with the runner's lock held: end a stuck run now."""


@dataclass(frozen=True)
class Outcome(Generic[R]):
    value: R
    late: bool  # some caller gave up on this run before it ended


@dataclass(frozen=True)
class Submission(Generic[R]):
    future: Future[Outcome[R]]
    late_since: float | None  # time.perf_counter() when the run started, if it is already late


class SingleFlightRunner(Generic[A, R]):
    """One piece of work, run on one daemon thread, one run at a time (see the module docstring)."""

    def __init__(self, work: Work[A, R], *, name: str, policy: Policy) -> None:
        self.work = work
        self.name = name
        self.policy = policy
        self._lock = threading.Lock()
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._requests: SimpleQueue[tuple[A, Future[Outcome[R]]] | None] = SimpleQueue()
        self._current: Future[Outcome[R]] | None = None  # the run in flight, if any
        self._late = False  # some caller gave up on the run in flight
        self._started = 0.0  # time.perf_counter() when the run in flight was submitted
        self._last_cut = 0.0  # time.perf_counter() of the last cut

    def submit(self, argument: A, seconds: float) -> Submission[R] | None:
        """Start a run, or (``JOIN``) the run in flight, or (``REFUSE``) ``None`` while one is in flight.

        ``seconds`` is the caller's deadline: it also decides when a stuck run is cut again.
        """
        with self._lock:
            self._ensure_thread()
            now = time.perf_counter()
            if self._current is None:
                future: Future[Outcome[R]] = Future()
                self._current, self._late, self._started = future, False, now
                self._requests.put((argument, future))
                return Submission(future, None)
            stuck = self._late if self.policy is Policy.JOIN else now - self._started > seconds
            if stuck and now - self._last_cut > seconds:
                self._cut(now)
            if self.policy is Policy.REFUSE:
                return None
            return Submission(self._current, self._started if self._late else None)

    def give_up(self, future: Future[Outcome[R]]) -> None:
        """A caller stopped waiting for ``future``: the run is late; cut it (once)."""
        with self._lock:
            if future is not self._current or self._late:
                return
            self._late = True
            self._cut(time.perf_counter())

    def stop(self) -> tuple[threading.Thread | None, bool]:
        """Ask this process's thread to finish (cutting a run in flight) and exit.

        The thread (to join), and whether it had a run in flight.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None or self._pid != os.getpid():
                return None, False  # never started, or the parent's: nothing of ours to stop
            self._requests.put(None)  # into the stopping thread's own queue
            busy = self._current is not None
            if busy:
                self._cut(time.perf_counter())
            return thread, busy

    def _ensure_thread(self) -> None:
        # With self._lock held.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        # First use, stopped, or inherited through fork: a fresh queue and thread. The parent's
        # run in flight (if any) is not ours to wait for or cut.
        self._pid, self._current, self._late = os.getpid(), None, False
        self._requests = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, args=(self._requests,), name=self.name, daemon=True)
        self._thread.start()

    def _cut(self, now: float) -> None:
        # With self._lock held, so no new run can start meanwhile: the cut reaches the run in flight.
        self._last_cut = now
        self.work.interrupt()

    def _finish(self, future: Future[Outcome[R]]) -> bool:
        """Whether the run of ``future`` was late; it is no longer in flight."""
        with self._lock:
            if future is not self._current:
                return False  # stopped and restarted meanwhile: nobody new joined this run
            late, self._current = self._late, None
            return late

    def _serve(self, requests: SimpleQueue[tuple[A, Future[Outcome[R]]] | None]) -> None:
        try:
            while (request := requests.get()) is not None:
                argument, future = request
                try:
                    value = self.work.run(argument)
                except Exception as exc:  # noqa: BLE001 - a bug in the work: its callers see it, the thread lives on
                    self._finish(future)
                    future.set_exception(exc)
                    continue
                future.set_result(Outcome(value, self._finish(future)))
        finally:
            connections.close_all()  # this thread's own connections


def answer_within(single_flight: SingleFlightRunner[A, R], argument: A, seconds: float) -> R | None:
    """One caller's whole wait: start (or join) a run and wait at most ``seconds`` for its value.

    ``None`` when no value came in time (the run is given up on, and cut), when the run in flight
    was already late, or when a ``REFUSE`` runner was busy. A late value is never returned.
    """
    submission = single_flight.submit(argument, seconds)
    if submission is None or submission.late_since is not None:
        return None
    try:
        outcome = submission.future.result(timeout=seconds)
    except FutureTimeout:
        single_flight.give_up(submission.future)
        return None
    return None if outcome.late else outcome.value


_registry_lock = threading.Lock()
_runners: dict[str, SingleFlightRunner[Any, Any]] = {}


def registered(key: str, make: Callable[[], SingleFlightRunner[A, R]]) -> SingleFlightRunner[A, R]:
    """The process's runner for ``key``, made by ``make()`` on first use."""
    with _registry_lock:
        found = _runners.get(key)
        if found is None:
            found = _runners[key] = make()
        return found


def stop_all(wait_seconds: float = 1.0, *, wait_for_runs: bool = True) -> None:
    """Stop every runner's thread and wait (at most ``wait_seconds`` in all) for them to close their connections.

    For tests, and process exit (``atexit``): a thread's persistent connection would otherwise
    stay open until the process dies (and block ``DROP DATABASE`` in a test run). The runners
    are forgotten: the next use builds fresh ones. ``wait_for_runs=False`` (at exit) waits only
    for the threads that were idle: a run in flight is cut, but one still connecting cannot be,
    and holding a finished command for it would gain nothing (its connection is not open yet).
    """
    with _registry_lock:
        runners = list(_runners.values())
        _runners.clear()
    stopped = [(thread, busy) for runner in runners for thread, busy in [runner.stop()] if thread is not None]
    give_up_at = time.perf_counter() + wait_seconds
    for thread, busy in stopped:
        if wait_for_runs or not busy:
            thread.join(max(0.0, give_up_at - time.perf_counter()))
    if stopped:
        ended = sum(not thread.is_alive() for thread, _ in stopped)
        logger.debug("background_threads_stopped", pid=os.getpid(), threads=len(stopped), ended=ended)


atexit.register(stop_all, EXIT_WAIT_SECONDS, wait_for_runs=False)
