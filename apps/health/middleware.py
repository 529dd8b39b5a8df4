"""Answer the probe endpoints before host validation, the HTTPS redirect and session work.

Kubernetes sends the pod IP as ``Host`` over plain HTTP. CommonMiddleware (and
SecurityMiddleware, when it redirects) call ``request.get_host()``, which rejects hosts outside
``ALLOWED_HOSTS``; ``SECURE_REDIRECT_EXEMPT`` alone cannot help. Only the three probe paths
skip that validation; every other URL goes through the full stack unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponseBase
from django.urls import Resolver404, ResolverMatch, get_resolver

logger = structlog.get_logger("apps.health.probe")


class HealthProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.resolver = get_resolver("apps.health.urls")

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        match = self._probe_route(request.path_info)
        if match is None:
            # Outside the except block: otherwise every later exception would carry this
            # Resolver404 as its context in tracebacks.
            return self.get_response(request)
        started = time.perf_counter()
        response = match.func(request, *match.args, **match.kwargs)
        # DEBUG: an orchestrator probing every few seconds must not drown the logs.
        logger.debug(
            "health_probe",
            method=request.method,
            path=request.path,
            status_code=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return response

    def _probe_route(self, path: str) -> ResolverMatch | None:
        try:
            return self.resolver.resolve(path)
        except Resolver404:
            return None
