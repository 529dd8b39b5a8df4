"""``manage.py check_services``: run the configured checks (``HEALTH_CHECKS``; optionally the rq worker too).

Exit status: 0 every critical check is ok (a failing non-critical one is a warning), 1 a critical
check failed, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import json
import time
from argparse import ArgumentParser, ArgumentTypeError
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from apps.common.numbers import decimal_number
from apps.health import checklist, checks, render

EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
_RETRY_PAUSE = 0.5
_SHORTEST_ATTEMPT = 0.1


def _seconds(low: float, high: float, *, low_allowed: bool) -> Callable[[str], float]:
    rule = f"must be {'>=' if low_allowed else '>'} {low:g} and <= {high:g} seconds"

    def parse(value: str) -> float:
        try:
            seconds = decimal_number(value)  # the same strict digits as every variable
        except ValueError:
            raise ArgumentTypeError("must be a number of seconds in plain digits (such as 5 or 0.5)") from None
        if not (low <= seconds if low_allowed else low < seconds) or not seconds <= high:
            raise ArgumentTypeError(rule)
        return seconds

    return parse


class Command(BaseCommand):
    help = (
        "Run the configured health checks (HEALTH_CHECKS: by default PostgreSQL and Redis; with --worker, "
        "also an rq worker). Exit 0 when every critical check is ok, 1 when not, 2 on bad usage or configuration."
    )
    # Must run when the project is half broken: it is the tool that says what is broken.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument(
            "--wait",
            type=_seconds(0, 86400, low_allowed=True),
            default=0,
            metavar="N",
            help="Retry until healthy or N seconds have passed (default: one attempt).",
        )
        parser.add_argument(
            "--timeout",
            type=_seconds(0, 600, low_allowed=False),
            default=None,
            metavar="S",
            help=f"Deadline for one attempt (default: HEALTHCHECK_TIMEOUT; {checks.WORKER_TIMEOUT:g} s with --worker).",
        )
        parser.add_argument(
            "--only",
            default=None,
            metavar="NAMES",
            help="Comma-separated checks to run: names of HEALTH_CHECKS, or worker.",
        )
        parser.add_argument(
            "--worker",
            action="store_true",
            help="Also prove a live rq worker consumes the default queue (canary job round trip).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            names = self._names(options["only"], options["worker"])
        except ImproperlyConfigured as exc:
            raise CommandError(f"bad HEALTH_CHECKS setting:\n{exc}", returncode=EXIT_USAGE) from None
        timeout: float = options["timeout"] or (
            checks.WORKER_TIMEOUT if "worker" in names else settings.HEALTHCHECK_TIMEOUT
        )
        report = self._run_until_healthy(names, timeout, options["wait"])
        if options["json"]:
            self.stdout.write(json.dumps(render.verbose_body(report)))
        else:
            self._write_table(report)
        if not report.ok:
            failed = [name for name, result in report.checks.items() if not result.ok and result.critical]
            raise CommandError("unhealthy: " + ", ".join(failed), returncode=EXIT_UNHEALTHY)

    @staticmethod
    def _run_until_healthy(names: tuple[str, ...], timeout: float, wait: float) -> checks.HealthReport:
        """Attempts until one is healthy or ``wait`` seconds have passed since the first began.

        No attempt runs past the window (``--wait 0``: one attempt of ``timeout``). Attempts are
        spaced ``_RETRY_PAUSE`` apart; when less than a pause is left, one last attempt gets the
        rest of the time. If that one fails too, the command still waits out the remainder, so
        ``--wait N`` never gives up before N seconds have passed.
        """
        give_up_at = time.monotonic() + wait
        first = min(timeout, max(wait, _SHORTEST_ATTEMPT)) if wait else timeout
        report = checks.run_checks(names, first, use_cache=False)
        while not report.ok and (left := give_up_at - time.monotonic()) > 0:
            last = left <= _RETRY_PAUSE + _SHORTEST_ATTEMPT
            if not last:
                time.sleep(_RETRY_PAUSE)
            remaining = max(give_up_at - time.monotonic(), _SHORTEST_ATTEMPT)
            report = checks.run_checks(names, min(timeout, remaining), use_cache=False)
            if last:
                if not report.ok:
                    time.sleep(max(0.0, give_up_at - time.monotonic()))
                break
        return report

    @staticmethod
    def _names(only: str | None, worker: bool) -> tuple[str, ...]:
        requested = [name.strip() for name in only.split(",")] if only else list(checklist.configured())
        if worker:
            requested.append("worker")
        try:
            return tuple(checklist.select(name for name in requested if name))
        except ValueError as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None

    def _write_table(self, report: checks.HealthReport) -> None:
        rows = [("service", "status", "latency", "detail")]
        for name, result in report.checks.items():
            detail = result.error or ""
            if result.detail:
                detail = f"{detail}: {result.detail}"
            facts = ", ".join(f"{key}={value}" for key, value in result.facts.items())
            if facts:
                detail = f"{detail} ({facts})" if detail else facts
            rows.append((name, result.status, f"{result.latency_ms:.1f} ms", detail))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for index, row in enumerate(rows):
            line = "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            if index == 0:
                self.stdout.write(line.rstrip())
            else:
                style = self.style.SUCCESS if row[1] == "ok" else self.style.ERROR
                if row[0] in report.warnings:
                    style = self.style.WARNING
                self.stdout.write(style(line.rstrip()))
        if not report.ok:
            self.stdout.write(self.style.ERROR("unhealthy"))
        elif report.warnings:
            self.stdout.write(self.style.WARNING(f"healthy (warnings: {', '.join(report.warnings)})"))
        else:
            self.stdout.write(self.style.SUCCESS("healthy"))
