"""What every bench section shares: the verdict table, the services, the project's gunicorn.

The shared PostgreSQL and Redis are only used, never broken. Where the bench's own data goes can
be moved, so that two people (or two suites) on one machine do not measure each other:
``BENCH_DATABASE`` (default ``bench``, on the PostgreSQL at 127.0.0.1:5432) and
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/7``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.processes import child_pids
from harness.project import Server, project_env

SHARED_PG = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BENCH_DB = os.environ.get("BENCH_DATABASE") or "bench"
BENCH_DB_URL = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
SHARED_REDIS_URL = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/7"
SHARED_REDIS_PORT = urlsplit(SHARED_REDIS_URL).port or 6379
SHARED_REDIS_DB = urlsplit(SHARED_REDIS_URL).path.strip("/") or "0"
TOKEN = "bench-token-0123456789abcdef-0123456789"  # noqa: S105 - a throwaway token for throwaway servers
WEB_CONCURRENCY = "2"


@dataclass
class Row:
    """One line of the verdict table."""

    area: str
    target: str
    measured: str
    verdict: str  # "pass", "miss" or "info"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)

    def add(self, area: str, target: str, measured: str, ok: bool | None) -> None:
        verdict = "info" if ok is None else ("pass" if ok else "miss")
        self.rows.append(Row(area, target, measured, verdict))
        print(f"  [{verdict}] {area}: {measured} (target: {target})", flush=True)


def say(message: str) -> None:
    print(message, flush=True)


# --- processes and services -------------------------------------------------------------------


def app_env(database_url: str, redis_url: str, settings: str = "config.settings.base") -> dict[str, str]:
    """Production settings (DEBUG off, JSON logs, HTTPS redirect on) against the given services."""
    env = project_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WEB_CONCURRENCY=WEB_CONCURRENCY,
        HEALTHCHECK_TOKEN=TOKEN,
        DJANGO_SECURE_SSL_REDIRECT=None,  # unset: the production default (on); probes are exempt
    )
    env["DJANGO_SETTINGS_MODULE"] = settings
    return env


@contextlib.contextmanager
def gunicorn(env: dict[str, str], extra_args: tuple[str, ...] = ()) -> Iterator[Server]:
    """The project's gunicorn (``gunicorn.conf.py``); ``extra_args`` override its settings."""
    server = Server(env, extra_args=extra_args)
    server.start(wait=60)
    try:
        yield server
    finally:
        server.stop()
        if server.log_path:
            server.log_path.unlink(missing_ok=True)


def workers_of(server: Server) -> set[int]:
    assert server.process is not None
    return child_pids(server.process.pid)


def context_switches(pids: set[int]) -> int:
    """Voluntary context switches so far, summed over every thread of these processes."""
    total = 0
    for pid in pids:
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
    return total


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds used so far by these processes (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def fmt_s(value: float) -> str:
    return f"{value:.2f} s"
