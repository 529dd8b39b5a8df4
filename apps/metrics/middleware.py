"""``/metrics`` answered early, and every other request counted and timed.

``MetricsEndpointMiddleware`` sits next to ``HealthProbeMiddleware``, before host validation and
the HTTPS redirect: Prometheus scrapes the pod IP over plain HTTP, as orchestrators probe. Only a
caller with ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time) gets the
metrics; anyone else, and everyone while the token is unset, gets the site's ordinary 404.

``RequestMetricsMiddleware`` comes right after it, so probes and scrapes (answered earlier) are
not counted as traffic; with ``METRICS_TOKEN`` unset it takes itself out of the chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase

from apps.common import multiprocess_metrics
from apps.common.probe_paths import METRICS, exact_paths
from apps.common.tokens import bearer_token, same_token
from apps.metrics import instruments

Handler = Callable[[HttpRequest], HttpResponseBase]
_ALLOWED_METHODS = ("GET", "HEAD")


class MetricsEndpointMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.paths = exact_paths((METRICS,))

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info not in self.paths:
            return self.get_response(request)
        presented = bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
        if not same_token(presented, settings.METRICS_TOKEN):
            # Django's own 404 (handler404, or the debug page): as for any path that does not exist.
            raise Http404
        if request.method not in _ALLOWED_METHODS:
            response = HttpResponse(status=405)
            response["Allow"] = ", ".join(_ALLOWED_METHODS)
            return response
        from apps.metrics import exposition  # the scrape's own machinery, loaded at the first scrape

        try:
            body, content_type = exposition.render()
        except multiprocess_metrics.FilesBusy:
            # A failed scrape (one gap in the graphs) rather than a count read twice.
            return HttpResponse(status=503, headers={"Retry-After": "1", "Cache-Control": "no-store"})
        response = HttpResponse(body, content_type=content_type)
        response["Cache-Control"] = "no-store"
        return response


class RequestMetricsMiddleware:
    def __init__(self, get_response: Handler) -> None:
        if not settings.METRICS_TOKEN:
            raise MiddlewareNotUsed("METRICS_TOKEN is unset: no metrics")
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        # The pattern that matched, as a path: "/admin/login/", "/" for the root's "".
        route = "/" + match.route if match is not None else instruments.UNMATCHED
        instruments.record_request(route, request.method or "", response.status_code, time.perf_counter() - started)
        return response
