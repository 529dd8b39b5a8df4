"""``manage.py check_services``: probe PostgreSQL, Redis (and optionally the rq worker).

Exit status: 0 all healthy, 1 something unhealthy, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import json
import time
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.health import checks, render

EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
_RETRY_PAUSE = 0.5


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ArgumentTypeError("must be a number of seconds") from None
    if not 0 < seconds <= 600:
        raise ArgumentTypeError("must be > 0 and <= 600 seconds")
    return seconds


def _non_negative_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ArgumentTypeError("must be a number of seconds") from None
    if not 0 <= seconds <= 86400:
        raise ArgumentTypeError("must be >= 0 and <= 86400 seconds")
    return seconds


class Command(BaseCommand):
    help = (
        "Check that PostgreSQL and Redis (and, with --worker, an rq worker) answer. "
        "Exit 0 when healthy, 1 when not, 2 on bad usage or configuration."
    )
    # Must run when the project is half broken: it is the tool that says what is broken.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
        parser.add_argument(
            "--wait",
            type=_non_negative_seconds,
            default=0,
            metavar="N",
            help="Retry until healthy or N seconds have passed (default: one attempt).",
        )
        parser.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=None,
            metavar="S",
            help=f"Deadline for one attempt (default: HEALTHCHECK_TIMEOUT; {checks.WORKER_TIMEOUT:g} s with --worker).",
        )
        parser.add_argument(
            "--only",
            default=None,
            metavar="NAMES",
            help="Comma-separated checks to run, from: " + ", ".join(checks.PROBES) + ".",
        )
        parser.add_argument(
            "--worker",
            action="store_true",
            help="Also prove a live rq worker consumes the default queue (canary job round trip).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = self._names(options["only"], options["worker"])
        timeout = options["timeout"]
        if timeout is None and "worker" in names:
            timeout = checks.WORKER_TIMEOUT
        give_up_at = time.monotonic() + options["wait"]

        report = checks.run_checks(names, timeout)
        while not report.ok and time.monotonic() + _RETRY_PAUSE < give_up_at:
            time.sleep(_RETRY_PAUSE)
            report = checks.run_checks(names, timeout)

        if options["json"]:
            self.stdout.write(json.dumps(render.verbose_body(report)))
        else:
            self._write_table(report)
        if not report.ok:
            raise CommandError(
                "unhealthy: " + ", ".join(n for n, r in report.checks.items() if not r.ok), returncode=EXIT_UNHEALTHY
            )

    @staticmethod
    def _names(only: str | None, worker: bool) -> tuple[str, ...]:
        requested = [name.strip() for name in only.split(",")] if only else list(checks.DEFAULT_CHECKS)
        if worker:
            requested.append("worker")
        try:
            return checks.validate_names(name for name in requested if name)
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
                self.stdout.write(style(line.rstrip()))
        overall = self.style.SUCCESS("healthy") if report.ok else self.style.ERROR("unhealthy")
        self.stdout.write(overall)
