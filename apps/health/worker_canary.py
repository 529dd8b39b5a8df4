"""Prove that a live rq worker consumes a queue: registration check, then a canary round trip.

Kept out of the HTTP probes on purpose: a web replica must stay in rotation while workers
restart, so only ``check_services --worker`` (and operators) look at workers.
"""

from __future__ import annotations

import time

import django_rq
from rq import worker_registration
from rq.job import JobStatus
from rq.queue import Queue
from rq.utils import missing_keys

from apps.common import errors
from apps.health.jobs import CANARY_RESULT, canary
from apps.health.probes import ProbeError

_POLL_INTERVAL = 0.02
# The caller stops waiting at ``timeout``; the canary gives up a little earlier so that it can
# still report its facts and delete its job. (A probe thread abandoned at the deadline dies with
# the command before its ``finally`` runs, leaving the canary job in the queue.)
_CLEANUP_MARGIN = 0.25
_ENDED = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


def live_worker_count(queue: Queue) -> int:
    """Workers registered for ``queue`` whose own key (refreshed by heartbeats) still exists.

    rq leaves a SIGKILLed worker in the queue's worker set; its key expires after the
    worker's TTL, so only registrations with a live key count. (``Worker.all()`` would build
    worker objects, which raises the connection pool's socket timeout to minutes.)
    """
    keys = list(worker_registration.get_keys(queue))
    return len(keys) - len(missing_keys(queue.connection, keys))


def round_trip(queue_name: str, timeout: float) -> dict[str, int]:
    """Queue facts, after a canary job finished within ``timeout``; ``ProbeError`` otherwise."""
    deadline = time.monotonic() + timeout - min(_CLEANUP_MARGIN, timeout / 2)
    queue = django_rq.get_queue(queue_name, commit_mode="auto")
    facts = {
        "workers": live_worker_count(queue),
        "queue_depth": queue.count,
        "failed_jobs": queue.failed_job_registry.count,
    }
    if facts["workers"] == 0:
        raise ProbeError(errors.NO_WORKER, f"no live worker is registered for queue {queue_name!r}", facts)

    job = queue.enqueue(
        canary,
        result_ttl=30,
        ttl=max(1, int(timeout) + 1),  # never picked up later by a worker that wakes too late
        failure_ttl=60,
        description="health canary",
    )
    try:
        while True:
            status = job.get_status(refresh=True)
            if status == JobStatus.FINISHED:
                if job.return_value() != CANARY_RESULT:
                    raise ProbeError(errors.UNKNOWN, "canary job returned an unexpected result", facts)
                return facts
            if status in _ENDED:
                raise ProbeError(errors.UNKNOWN, f"canary job ended as {status.value}", facts)
            if time.monotonic() >= deadline:
                raise ProbeError(errors.TIMEOUT, "no worker finished the canary job in time", facts)
            time.sleep(_POLL_INTERVAL)
    finally:
        job.delete(remove_from_queue=True)
