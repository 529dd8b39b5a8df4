"""Enqueue background jobs and read their outcome: what views and services call.

Jobs go through django-rq's queues (``settings.RQ_QUEUES``), so they are enqueued only once
the surrounding database transaction commits, and carry the caller's request id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import django_rq
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.types import FunctionReferenceType

MISSING = "missing"


@dataclass(frozen=True)
class JobOutcome:
    """Where a job stands: an rq status ("queued", "started", "finished", "failed", ...), or
    ``missing`` (never enqueued because its transaction rolled back, deleted, or expired)."""

    status: str
    result: Any = None  # the return value, once finished

    @property
    def finished(self) -> bool:
        return self.status == JobStatus.FINISHED.value


def submit(func: FunctionReferenceType, *args: Any, queue: str = "default", **kwargs: Any) -> str:
    """Enqueue ``func(*args, **kwargs)`` on ``queue`` and return the job's id at once.

    Inside ``transaction.atomic()`` django-rq defers the enqueue until the commit and returns
    no job, so the id is chosen here: the caller can hand it out right away (say, in a 202
    response) and poll ``outcome()``. If the transaction rolls back, the job never exists.
    rq's own options (``job_timeout``, ``result_ttl``, ``retry=Retry(max=3)``, ...) pass through.
    """
    job_id = uuid.uuid4().hex
    django_rq.get_queue(queue).enqueue(func, *args, job_id=job_id, **kwargs)
    return job_id


def outcome(job_id: str, queue: str = "default") -> JobOutcome:
    """The job's status, and its return value once it finished."""
    try:
        job = Job.fetch(job_id, connection=django_rq.get_connection(queue))
    except NoSuchJobError:
        return JobOutcome(MISSING)
    status = job.get_status(refresh=False)
    if status is None:
        return JobOutcome(MISSING)
    if status == JobStatus.FINISHED:
        return JobOutcome(status.value, job.return_value())
    return JobOutcome(status.value)
