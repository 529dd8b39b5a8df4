"""Request context: validate the caller's X-Request-ID, bind it and the client's address to the
log context, echo the id back."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponseBase

from apps.common import request_context
from apps.common.request_id import accept_or_generate
from apps.core.client_ip import client_ip

REQUEST_ID_HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"


class RequestIdMiddleware:
    """First in the chain: every later middleware and log line sees only a safe request id, and
    the client's address by the forwarded-headers rule (``apps.common.forwarded``), never a
    header an arbitrary client wrote (django-structlog's own ``ip`` is off).

    The id is written back into ``request.META`` before anything reads ``request.headers``
    (Django caches it), so django-structlog, which trusts the upstream id, binds the same one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = accept_or_generate(request.META.get(_META_KEY))
        request.META[_META_KEY] = request_id
        request.request_id = request_id  # type: ignore[attr-defined]
        request.started_at = time.perf_counter()  # type: ignore[attr-defined]
        request_context.remember(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, ip=client_ip(request))
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response[REQUEST_ID_HEADER] = request_id
        return response
