"""Example background jobs: the shape to copy for real ones.

A job is a module-level function (the worker imports it by its dotted path) that takes plain,
picklable arguments (ids rather than model instances: the row may change before the job runs)
and returns something small, kept in Redis for the queue's result TTL. Enqueue jobs through
``apps.core.background.submit``.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.db import connection

logger = structlog.get_logger(__name__)


def echo(message: str) -> dict[str, Any]:
    """Return ``message`` with the ids the worker bound to the log context while running it.

    ``request_id`` is the id of the request that enqueued the job (carried in ``job.meta``):
    the proof that a job's log lines can be traced back to the request that caused them.
    """
    context = structlog.contextvars.get_contextvars()
    logger.info("echo_job_ran", message_length=len(message))
    return {
        "message": message,
        "request_id": context.get("request_id"),
        "job_id": context.get("job_id"),
        "worker_id": context.get("worker_id"),
    }


def database_check() -> dict[str, Any]:
    """Run one query on Django's default database from the worker; report which session ran it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_backend_pid()")
        else:
            cursor.execute("SELECT NULL")
        (backend_pid,) = cursor.fetchone()
    return {
        "vendor": connection.vendor,
        "backend_pid": backend_pid,
        "worker_id": structlog.contextvars.get_contextvars().get("worker_id"),
    }
