"""The rq worker class used by ``manage.py rqworker``: log context, clean DB connections, a
registration that survives a Redis restart, and every job's outcome counted for ``/metrics``."""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.db import close_old_connections, connections
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import Pipeline
from redis.retry import Retry
from rq import worker_registration
from rq.exceptions import DeserializationError
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.queue import Queue
from rq.worker import Worker

from apps.common import job_metrics
from apps.common.masking import service_fields

logger = structlog.get_logger(__name__)

_JOB_CONTEXT = ("job_id", "queue", "job_func", "request_id")
REDIS_RETRIES = 6


class ContextWorker(Worker):
    """rq's forking worker with four additions (and ``LOG_LEVEL`` as its log level, and a failed
    job's traceback logged as a structured exception).

    - Every line the worker logs carries ``worker_id``; while a job runs, also ``job_id``,
      ``queue``, ``job_func`` and the ``request_id`` of the request that enqueued it.
    - Each job starts and ends with stale database connections closed, so a PostgreSQL
      restart between two jobs does not fail the second one.
    - Its Redis commands are retried with back-off, so a Redis restart does not end it.
    - A worker whose registration vanished from Redis (Redis restarted without persistence,
      or was flushed) registers again at its next heartbeat. rq itself reconnects and keeps
      consuming, but stays out of the queue's worker set, so ``check_services --worker`` and
      the dashboard would report no worker while one is busy working.
    - Every job that ends is counted in Redis with its outcome and duration
      (``apps.common.job_metrics``), where ``/metrics`` reads it, whichever pod the worker runs in.
    """

    def work(self, *args: Any, **kwargs: Any) -> bool:
        # django-rq derives a level from --verbosity and rq applies it to its own loggers when
        # the worker starts, over the LOG_LEVEL that LOGGING set: LOG_LEVEL rules here as in web.
        kwargs["logging_level"] = settings.LOG_LEVEL
        self._retry_redis_commands()
        structlog.contextvars.bind_contextvars(worker_id=self.name)
        logger.info(
            "worker_ready",
            queues=self.queue_names(),
            **service_fields(settings.DATABASES["default"], settings.REDIS_URL),
        )
        return super().work(*args, **kwargs)

    def _retry_redis_commands(self) -> None:
        """Carry every Redis command of this worker (and its work horses) across a Redis restart.

        rq retries its blocking dequeue with back-off, but a connection error anywhere else in
        its loop (the heartbeat right after a dequeue, preparing a job's execution, a work horse
        writing its result) makes the worker quit with the job half-handled. redis-py's own
        retries, with exponential back-off (about 12 s in all), cover those. Only here, in the
        worker process: the web side keeps its 2 s bound on every enqueue.
        """
        pool = self.connection.connection_pool
        pool.connection_kwargs["retry"] = Retry(ExponentialWithJitterBackoff(base=0.25, cap=4), REDIS_RETRIES)
        pool.disconnect()  # connections opened before now carry no retry

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        super().heartbeat(timeout, pipeline)
        # Heartbeats inside a pipeline belong to job bookkeeping; the idle loop and the end of
        # every job send plain ones, which is often enough to notice a lost registration.
        if pipeline is None and not self._is_horse:
            self._restore_registration(timeout or self.worker_ttl + 60)

    def _restore_registration(self, ttl: int) -> None:
        # register_birth() writes "birth"; a hash without it was recreated by the heartbeat alone.
        if self.connection.hexists(self.key, "birth"):
            return
        logger.warning("worker_registration_restored", reason="worker key lost in Redis")
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping={**self.serialize(), "state": self.get_state()})
            pipe.expire(self.key, ttl)
            worker_registration.register(self, pipe)
            pipe.execute()

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # rq logs the traceback as text inside the message (and the job's arguments, which may
        # hold personal data): log it as a structured exception instead, one JSON line like a
        # Django 500, then run the exception handlers as rq does.
        try:
            func_name = job.func_name
        except DeserializationError:
            func_name = "<DeserializationError>"
        logger.error("job_failed", job_id=job.id, queue=job.origin, job_func=func_name, exc_info=exc_info)
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        super().handle_job_success(job, queue, *args, **kwargs)
        self._count(job, queue.name, job_metrics.FINISHED)

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        # Decided before rq's own handling, which clears the stop request and uses up a retry.
        if self._stopped_job_id == job.id:
            outcome = job_metrics.STOPPED
        else:
            outcome = job_metrics.RETRIED if job.should_retry else job_metrics.FAILED
        super().handle_job_failure(job, queue, *args, **kwargs)
        self._count(job, queue.name, outcome)

    def handle_job_retry(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        super().handle_job_retry(job, queue, *args, **kwargs)  # the job returned a Retry
        self._count(job, queue.name, job_metrics.RETRIED)

    def _count(self, job: Job, queue: str, outcome: str) -> None:
        """Add the job to the queue's counts; a Redis hiccup here costs a count, never the job."""
        seconds = (job.ended_at - job.started_at).total_seconds() if job.started_at and job.ended_at else None
        try:
            job_metrics.record(self.connection, queue, outcome, seconds)
        except Exception as exc:  # noqa: BLE001 - metrics must never fail a job
            logger.warning("job_not_counted", job_id=job.id, outcome=outcome, error=type(exc).__name__)

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
