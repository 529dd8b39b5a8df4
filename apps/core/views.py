"""The development start page: where things are, right after ``make run``."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.common.probe_paths import PROBE_PATHS


def start_page(request: HttpRequest) -> HttpResponse:
    """Links to the admin, the queue dashboard and the probes (routed only when DEBUG is true)."""
    context = {
        "admin_url": "/" + settings.ADMIN_URL,
        "queues_url": "/" + settings.ADMIN_URL + "django_rq/",
        "probe_paths": ["/" + path for path in PROBE_PATHS],
    }
    return render(request, "core/start_page.html", context)
