"""The single-flight runner's own rules, with work that only gives up when cut (real threads, real time).

The fault tests drive these paths through real servers; what they cannot stage reliably is a cut
that lands before there is a socket to cut (a probe still connecting), so that is staged here.
"""

from __future__ import annotations

import os
import threading

import pytest

from apps.health.runner import Policy, SingleFlightRunner, Submission, registered, stop_all
from harness.processes import timed, wait_until


class WorkThatNeedsTwoCuts:
    """Stuck until interrupted twice: the first cut finds nothing to cut, like a connect in progress."""

    def __init__(self, cuts_to_release: int = 2) -> None:
        self.cuts = 0
        self.cuts_to_release = cuts_to_release
        self.runs = 0
        self.released = threading.Event()

    def run(self, argument: str) -> str:
        self.runs += 1
        if not self.released.wait(10):
            raise TimeoutError("never released")
        return argument

    def interrupt(self) -> None:
        self.cuts += 1
        if self.cuts >= self.cuts_to_release:
            self.released.set()


def _a_run_in_flight(name: str) -> tuple[WorkThatNeedsTwoCuts, SingleFlightRunner[str, str], Submission[str]]:
    """A JOIN runner whose run (of argument ``name``) stays stuck until its first cut."""
    work = WorkThatNeedsTwoCuts(cuts_to_release=1)
    runner = SingleFlightRunner(work, name=name, policy=Policy.JOIN)
    submission = runner.submit(name, 5)
    assert submission is not None
    return work, runner, submission


def test_a_run_still_stuck_a_deadline_after_its_cut_is_cut_again() -> None:
    work = WorkThatNeedsTwoCuts()
    runner = SingleFlightRunner(work, name="test-join", policy=Policy.JOIN)
    try:
        first = runner.submit("first", 0.2)
        assert first is not None
        assert first.late_since is None
        assert not first.future.done()
        runner.give_up(first.future)  # the first caller's deadline passed
        assert work.cuts == 1

        joined = runner.submit("second", 0.2)  # right after the cut: no second cut yet
        assert joined is not None
        assert joined.future is first.future
        assert joined.late_since is not None  # told at once that this run is late
        assert work.cuts == 1

        # A whole deadline after the cut and still stuck: the next caller cuts again.
        wait_until(lambda: runner.submit("third", 0.2) and work.cuts == 2, 5, "the second cut")
        outcome = first.future.result(timeout=2)
        assert (outcome.value, outcome.late) == ("first", True)  # it answered, but late

        fresh = runner.submit("fresh", 0.2)  # the stuck run is over: a new one starts
        assert fresh is not None
        assert fresh.future is not first.future
        assert fresh.late_since is None
        assert fresh.future.result(timeout=2).late is False
        assert work.runs == 2  # the callers that joined did not start runs of their own
    finally:
        runner.stop()


def test_refuse_answers_none_while_busy_and_cuts_a_run_busy_past_a_deadline() -> None:
    """Nobody else waits on a refused caller's behalf, so a run busy a whole deadline is cut by the next
    caller even if its own caller never gave up (say, it died first)."""
    work = WorkThatNeedsTwoCuts(cuts_to_release=1)
    runner = SingleFlightRunner(work, name="test-refuse", policy=Policy.REFUSE)
    try:
        first = runner.submit("first", 0.2)
        assert first is not None
        assert runner.submit("second", 0.2) is None  # busy: refused at once, nothing cut
        assert work.cuts == 0
        wait_until(lambda: runner.submit("third", 0.2) is None and work.cuts == 1, 5, "the cut of the stuck run")
        assert first.future.result(timeout=2).value == "first"
        again = wait_until(lambda: runner.submit("again", 0.2), 5, "a new run once the stuck one ended")
        assert again.future.result(timeout=2).value == "again"
    finally:
        runner.stop()


def test_stop_cuts_the_run_in_flight_and_a_later_submit_starts_afresh() -> None:
    work, runner, submission = _a_run_in_flight("stuck")
    thread, busy = runner.stop()
    assert thread is not None
    assert busy
    thread.join(5)
    assert not thread.is_alive()
    assert work.cuts == 1
    assert submission.future.result(timeout=0).value == "stuck"

    restarted = runner.submit("after stop", 5)
    assert restarted is not None
    assert restarted.future.result(timeout=5).value == "after stop"
    runner.stop()


@pytest.mark.slow  # forks this process
def test_after_fork_the_child_runs_its_own_thread_and_never_cuts_the_parents_run() -> None:
    work, runner, in_flight = _a_run_in_flight("parent's run")
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            work.released.set()  # the child's copy: lets the child's own run finish at once
            stopped, _ = runner.stop()  # the parent's thread: nothing of ours to stop or cut
            child_run = runner.submit("child's run", 5)
            answered = child_run is not None and child_run.future.result(timeout=5).value == "child's run"
            status = 0 if (stopped is None and work.cuts == 0 and answered) else 3
        finally:
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert work.cuts == 0  # the parent's run is untouched
    assert not in_flight.future.done()
    runner.stop()
    assert in_flight.future.result(timeout=5).value == "parent's run"


def test_at_exit_idle_threads_are_waited_for_and_a_run_that_cannot_be_cut_is_not() -> None:
    """``stop_all(wait_for_runs=False)``, as registered with ``atexit``: a finished command must not
    wait for a probe still connecting to a black hole (no cut can free it)."""
    stuck = WorkThatNeedsTwoCuts(cuts_to_release=99)
    idle = WorkThatNeedsTwoCuts()
    idle.released.set()
    stuck_runner = registered("test-exit-stuck", lambda: SingleFlightRunner(stuck, name="stuck", policy=Policy.JOIN))
    idle_runner = registered(
        "test-exit-idle", lambda: SingleFlightRunner(idle, name="test-exit-idle", policy=Policy.JOIN)
    )
    try:
        assert stuck_runner.submit("stuck", 5) is not None
        done = idle_runner.submit("done", 5)
        assert done is not None
        done.future.result(timeout=5)
        with timed() as elapsed:
            stop_all(10, wait_for_runs=False)
        assert elapsed[0] < 5  # not the 10 s the stuck run could take
        assert stuck.cuts == 1  # cut on the way out all the same
        assert "idle" not in {thread.name for thread in threading.enumerate()}  # it closed and ended
        fresh = SingleFlightRunner(idle, name="idle", policy=Policy.JOIN)
        assert registered("test-exit-idle", lambda: fresh) is fresh  # the stopped runners are forgotten
    finally:
        stuck.released.set()
