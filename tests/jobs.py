"""Jobs for the tests, importable by a worker subprocess (its cwd is the project root)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

logger = structlog.get_logger("tests.jobs")


def _announce(marker: str) -> None:
    # Written atomically: the test polls for the file and reads the work horse's pid from it.
    tmp = Path(f"{marker}.tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(marker)


def block(marker: str, seconds: float) -> str:
    """Announce the work horse's pid in ``marker``, then run for ``seconds``: a job caught mid-run."""
    _announce(marker)
    time.sleep(seconds)
    return "finished"


def block_first_attempt(marker: str, seconds: float) -> str:
    """The first attempt announces itself and runs for ``seconds``; a retry returns at once."""
    if Path(marker).exists():
        return "retried"
    _announce(marker)
    time.sleep(seconds)
    return "finished"


def fail(message: str) -> None:
    """Raise: a job that fails, for the logging tests."""
    raise RuntimeError(message)


def log_and_return(value: str) -> str:
    """Log one line (to check the job's log context) and return ``value`` upper-cased."""
    logger.info("sample_job_ran", value=value)
    return value.upper()
