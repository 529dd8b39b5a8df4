"""Extra fields on django-structlog's request lines: method, path, status code, duration."""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django_structlog import signals


def _started(request: HttpRequest, log_kwargs: dict[str, Any], **_: Any) -> None:
    log_kwargs.update(method=request.method, path=request.path)


def _finished(request: HttpRequest, response: HttpResponseBase, log_kwargs: dict[str, Any], **_: Any) -> None:
    log_kwargs.update(method=request.method, path=request.path, status_code=response.status_code)
    started_at = getattr(request, "started_at", None)
    if started_at is not None:
        log_kwargs["duration_ms"] = round((time.perf_counter() - started_at) * 1000, 3)


def connect() -> None:
    signals.bind_extra_request_metadata.connect(_started, dispatch_uid="core.request_started")
    signals.bind_extra_request_finished_metadata.connect(_finished, dispatch_uid="core.request_finished")
