"""Run the configured checks within a deadline: shared by the health views, ``check_services`` and the worker canary.

``run_checks(names, timeout)`` answers within ``timeout`` whatever the dependencies do. Each
check's probe (``apps.health.probes``, chosen by ``HEALTH_CHECKS``: ``apps.health.checklist``)
runs on its own single-flight runner (``apps.health.runner``, policy ``JOIN``):

- one long-lived thread per check per process, so the database probe keeps reusing one
  persistent connection; a burst of probes costs one ``SELECT 1`` and one ``PING``;
- a probe still running at the deadline is reported as ``timeout`` and cut loose;
- a run that missed a caller's deadline is late for everyone: callers arriving while it is
  still stuck get ``timeout`` at once, and if it finally succeeds it still reports ``timeout``,
  never a late "ok".

``HEALTHCHECK_CACHE_SECONDS`` > 0 reuses a finished report that long. A failing non-critical
check is reported but leaves the report ``ok``. A check that changes state is logged once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.dispatch import Signal

from apps.common import errors
from apps.health import checklist, runner
from apps.health.probes import Probe

logger = structlog.get_logger(__name__)

WORKER_TIMEOUT = 5.0  # a forking worker needs more than a ping to prove itself

# Sent with ``report`` after every run of the probes (never for a cached report): /metrics
# (apps.metrics) records each check's status, latency and error category from it.
checks_ran = Signal()


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    latency_ms: float
    error: str | None = None  # a category from apps.common.errors, safe for any audience
    detail: str | None = None  # exception text: logs and the operator's terminal only
    facts: dict[str, int] = field(default_factory=dict)
    critical: bool = True  # a failure makes the replica unready

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"

    def late(self) -> CheckResult:
        """This result of a run that a caller gave up on: a ``timeout``, never a late "ok"."""
        detail = self.detail if not self.ok else "answered after the deadline"
        return dataclasses.replace(self, ok=False, error=errors.TIMEOUT, detail=detail)


@dataclass(frozen=True)
class HealthReport:
    checks: dict[str, CheckResult]
    finished_at: float  # time.monotonic()

    @property
    def ok(self) -> bool:
        """Every critical check is ok."""
        return all(result.ok for result in self.checks.values() if result.critical)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"

    @property
    def warnings(self) -> tuple[str, ...]:
        """The failing non-critical checks."""
        return tuple(name for name, result in self.checks.items() if not result.ok and not result.critical)


class _ProbeWork:
    """A check's probe as a runner's work: every run, failures included, becomes a ``CheckResult``."""

    def __init__(self, name: str, probe: Probe) -> None:
        self.name, self.probe = name, probe
        self._cut = False  # interrupted during the current run: its failure is the cut's doing

    def run(self, timeout: float) -> CheckResult:
        self._cut = False
        started = time.perf_counter()
        try:
            facts = self.probe.run(timeout) or {}
        except Exception as exc:  # noqa: BLE001 - any failure is the probe's answer
            latency = _ms(time.perf_counter() - started)
            facts = getattr(exc, "facts", None) or {}
            category = errors.TIMEOUT if self._cut else errors.categorize(exc)
            detail = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
            logger.debug("health_probe_failed", check=self.name, error=category, detail=detail, latency_ms=latency)
            _release_frames(exc)
            return CheckResult(self.name, False, latency, category, detail, facts)
        return CheckResult(self.name, True, _ms(time.perf_counter() - started), facts=facts)

    def interrupt(self) -> None:
        self._cut = True
        self.probe.interrupt()


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


def _runner(spec: checklist.CheckSpec) -> runner.SingleFlightRunner[float, CheckResult]:
    def make() -> runner.SingleFlightRunner[float, CheckResult]:
        work = _ProbeWork(spec.name, spec.build())
        return runner.SingleFlightRunner(work, name=f"health-probe-{spec.name}", policy=runner.Policy.JOIN)

    return runner.registered(spec.key, make)


_state_lock = threading.Lock()
_last_status: dict[str, str] = {}
_cached: dict[tuple[str, ...], HealthReport] = {}


def run_checks(
    names: Iterable[str] | None = None, timeout: float | None = None, *, use_cache: bool = True
) -> HealthReport:
    """Run the named checks (default: every configured one) concurrently; return within ``timeout`` seconds.

    ``use_cache=False`` always runs the probes (a caller that retries until healthy must not be
    handed its own earlier failure from the ``HEALTHCHECK_CACHE_SECONDS`` window).
    """
    specs = checklist.select(names)
    if timeout is None:
        timeout = settings.HEALTHCHECK_TIMEOUT
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError("timeout must be a positive number of seconds")

    cache_seconds: float = settings.HEALTHCHECK_CACHE_SECONDS if use_cache else 0
    cache_key = tuple(spec.key for spec in specs.values())
    if cache_seconds > 0:
        cached = _cached.get(cache_key)
        if cached is not None and time.monotonic() - cached.finished_at < cache_seconds:
            return cached

    runners = {name: _runner(spec) for name, spec in specs.items()}
    submitted: dict[str, runner.Submission[CheckResult]] = {}
    for name, probe_runner in runners.items():
        submission = probe_runner.submit(timeout, timeout)
        if submission is None:  # only a REFUSE runner says no, and probes JOIN
            raise RuntimeError(f"the runner of check {name!r} refused a probe")
        submitted[name] = submission
    deadline = time.monotonic() + timeout
    for submission in submitted.values():
        if submission.late_since is None:
            # One future after another: cheaper than concurrent.futures.wait() on this hot path.
            with contextlib.suppress(FutureTimeout):
                submission.future.result(timeout=max(0.0, deadline - time.monotonic()))
    results: dict[str, CheckResult] = {}
    for name, submission in submitted.items():
        if submission.future.done():
            outcome = submission.future.result()
            result = outcome.value.late() if outcome.late else outcome.value
        elif submission.late_since is not None:
            stuck = _ms(time.perf_counter() - submission.late_since)
            result = CheckResult(name, False, stuck, errors.TIMEOUT, "still running past an earlier deadline")
        else:
            runners[name].give_up(submission.future)
            result = CheckResult(name, False, _ms(timeout), errors.TIMEOUT, "no answer before the deadline")
        # Criticality is the setting's, not the run's: changing it needs no new probe thread.
        results[name] = dataclasses.replace(result, critical=specs[name].critical)

    report = HealthReport(results, time.monotonic())
    checks_ran.send(sender=HealthReport, report=report)
    if cache_seconds > 0:
        _cached[cache_key] = report
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
                critical=result.critical,
            )
