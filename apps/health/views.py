"""The probe endpoints. Thin: the work is in ``checks``, the shapes in ``render``."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from apps.health import access, render
from apps.health.checks import run_checks


def _json(body: dict[str, Any], status: int, content_type: str = "application/json") -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def livez(request: HttpRequest) -> HttpResponse:
    """The process is up and serving requests; checks nothing else (restarting fixes nothing else)."""
    return _json({"status": "ok"}, 200)


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    """PostgreSQL and Redis answer: 200, or 503 naming the failing ones."""
    report = run_checks()
    status = 200 if report.ok else 503
    wants_details = request.GET.get("verbose") == "1"
    health_json = render.wants_health_json(request.META.get("HTTP_ACCEPT", ""))
    authorised = False
    if wants_details or health_json:
        database = report.checks.get("db")
        authorised = access.may_see_details(request, database_ok=database is None or database.ok)
    if health_json:
        return _json(render.health_json_body(report, details=authorised), status, render.HEALTH_JSON)
    if wants_details and authorised:
        return _json(render.verbose_body(report), status)
    return _json(render.plain_body(report), status)


# Same checks today; kept as its own name so either can change without breaking probes.
healthz = readyz
