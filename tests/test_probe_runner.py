"""The probe runner's own rules, with a probe that only gives up when cut (real threads, real time).

The fault tests drive these paths through real servers; what they cannot stage reliably is a cut
that lands before there is a socket to cut (a probe still connecting), so that is staged here.
"""

from __future__ import annotations

import threading
import time

from apps.common import errors
from apps.health.checks import _ProbeRunner


class ProbeThatNeedsTwoCuts:
    """Stuck until interrupted twice: the first cut finds nothing to cut, like a connect in progress."""

    name = "stubborn"

    def __init__(self) -> None:
        self.cuts = 0
        self.released = threading.Event()

    def run(self, timeout: float) -> None:
        if not self.released.wait(10):
            raise TimeoutError("never released")

    def interrupt(self) -> None:
        self.cuts += 1
        if self.cuts >= 2:
            self.released.set()


def test_a_run_still_stuck_a_deadline_after_its_cut_is_cut_again() -> None:
    probe = ProbeThatNeedsTwoCuts()
    runner = _ProbeRunner(probe)
    try:
        future, late_since = runner.submit(0.2)
        assert late_since is None
        assert not future.done()
        runner.give_up(future)  # the first caller's deadline passed
        assert probe.cuts == 1

        joined, late_since = runner.submit(0.2)  # right after the cut: no second cut yet
        assert joined is future
        assert late_since is not None  # told at once that this run is late
        assert probe.cuts == 1

        time.sleep(0.25)
        runner.submit(0.2)  # a whole deadline after the cut and still stuck: cut again
        assert probe.cuts == 2
        result = future.result(timeout=2)
        assert (result.ok, result.error) == (False, errors.TIMEOUT)  # late is never "ok"

        fresh, late_since = runner.submit(0.2)  # the stuck run is over: a new one starts
        assert fresh is not future
        assert late_since is None
        assert fresh.result(timeout=2).ok
    finally:
        runner.stop()
