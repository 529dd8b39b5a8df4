"""The probe endpoints. Thin: the work is in ``checks``, the shapes in ``render``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.common import draining
from apps.health import access, render
from apps.health.checks import run_checks

_ALLOWED_METHODS = ("GET", "HEAD")


def _json(body: dict[str, Any], status: int, content_type: str = "application/json") -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def _probe(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """GET and HEAD only, and even a refusal is JSON that no cache keeps."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method not in _ALLOWED_METHODS:
            response = _json({"status": "error", "error": "method_not_allowed"}, 405)
            response["Allow"] = ", ".join(_ALLOWED_METHODS)
            return response
        return view(request)

    return wrapper


@_probe
def livez(request: HttpRequest) -> HttpResponse:
    """The process is up and serving requests; checks nothing else (restarting fixes nothing else)."""
    if render.wants_health_json(request.META.get("HTTP_ACCEPT", "")):
        return _json({"status": "pass"}, 200, render.HEALTH_JSON)
    return _json({"status": "ok"}, 200)


@_probe
def readyz(request: HttpRequest) -> HttpResponse:
    """Should this replica get traffic: no while it drains, else whether the checks pass."""
    if draining.is_draining():
        # SIGTERM arrived (DRAIN_SECONDS): 503 at once, so load balancers take this replica out
        # of rotation while it still serves. No check runs: the answer no longer depends on them.
        if render.wants_health_json(request.META.get("HTTP_ACCEPT", "")):
            return _json({"status": "fail", "output": "draining"}, 503, render.HEALTH_JSON)
        return _json({"status": "draining"}, 503)
    return _checks_answer(request)


@_probe
def healthz(request: HttpRequest) -> HttpResponse:
    """The configured checks (``HEALTH_CHECKS``) answer: 200, or 503 naming the failing ones.

    A failing non-critical check shows as ``"error"`` (health+json: ``"warn"``) but keeps the 200.
    A draining replica is still healthy: only readiness says it should get no more traffic, so a
    monitor watching ``/healthz`` does not page for every deploy.
    """
    return _checks_answer(request)


def _checks_answer(request: HttpRequest) -> HttpResponse:
    """The body and status of the checks, for ``/readyz`` (when not draining) and ``/healthz``."""
    deadline = time.monotonic() + settings.HEALTHCHECK_TIMEOUT
    # From the raw query string, never request.GET: past DATA_UPLOAD_MAX_NUMBER_FIELDS parameters
    # that raises, and a probe must answer JSON whatever the query string.
    verbose = [value for key, value in parse_qsl(request.META.get("QUERY_STRING", "")) if key == "verbose"]
    wants_details = verbose[-1:] == ["1"]
    health_json = render.wants_health_json(request.META.get("HTTP_ACCEPT", ""))
    # Started before the checks so a staff-session lookup shares their deadline.
    authorisation = access.authorise(request) if wants_details or health_json else access.DENIED
    report = run_checks()
    status = 200 if report.ok else 503
    authorised = authorisation.granted(deadline)
    if health_json:
        return _json(render.health_json_body(report, details=authorised), status, render.HEALTH_JSON)
    if wants_details and authorised:
        return _json(render.verbose_body(report), status)
    return _json(render.plain_body(report), status)
