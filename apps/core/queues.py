"""The queue class: jobs remember the log context (request id) they were enqueued in."""

from __future__ import annotations

from typing import Any

import structlog
from django_rq.queues import DjangoRQ, get_result_ttl
from rq.job import Job

# The context keys a job carries from the code that enqueued it into the worker.
PROPAGATED_CONTEXT = ("request_id",)


class ContextQueue(DjangoRQ):
    """django-rq's queue (on-commit enqueueing), plus the caller's request id in ``job.meta``."""

    def enqueue_call(self, *args: Any, **kwargs: Any) -> Job | None:  # type: ignore[override]
        context = structlog.contextvars.get_contextvars()
        carried = {key: context[key] for key in PROPAGATED_CONTEXT if key in context}
        if carried:
            kwargs["meta"] = {**carried, **(kwargs.get("meta") or {})}
        if kwargs.get("result_ttl") is None:
            # rq's enqueue() passes result_ttl=None explicitly, and django-rq only fills in the
            # configured DEFAULT_RESULT_TTL when the key is absent: results would be kept for
            # rq's own 500 s instead.
            kwargs["result_ttl"] = get_result_ttl(self.name)
        return super().enqueue_call(*args, **kwargs)
