"""The rq worker class used by ``manage.py rqworker``: log context and clean DB connections."""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.db import close_old_connections, connections
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from config.logging import service_fields

logger = structlog.get_logger(__name__)

_JOB_CONTEXT = ("job_id", "queue", "job_func", "request_id")


class ContextWorker(Worker):
    """rq's forking worker with two additions.

    - Every line the worker logs carries ``worker_id``; while a job runs, also ``job_id``,
      ``queue``, ``job_func`` and the ``request_id`` of the request that enqueued it.
    - Each job starts and ends with stale database connections closed, so a PostgreSQL
      restart between two jobs does not fail the second one.
    """

    def work(self, *args: Any, **kwargs: Any) -> bool:
        structlog.contextvars.bind_contextvars(worker_id=self.name)
        logger.info(
            "worker_ready",
            queues=self.queue_names(),
            **service_fields(settings.DATABASES["default"], settings.REDIS_URL),
        )
        return super().work(*args, **kwargs)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        structlog.contextvars.bind_contextvars(
            job_id=job.id,
            queue=queue.name,
            job_func=job.func_name,
            request_id=job.meta.get("request_id"),
        )
        close_old_connections()
        try:
            return super().perform_job(job, queue, execution)
        finally:
            if self._is_horse:
                # The work horse is about to os._exit(): say goodbye to PostgreSQL properly.
                connections.close_all()
            else:
                close_old_connections()
            structlog.contextvars.unbind_contextvars(*_JOB_CONTEXT)
