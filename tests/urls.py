"""The project's URLs plus test-only views: never part of the production URL conf."""

import os
import threading
import time
from pathlib import Path

import django_rq
import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from tests.jobs import fail as failing_job
from tests.jobs import log_and_return

logger = structlog.get_logger("tests.views")


def fail(request: HttpRequest) -> HttpResponse:
    logger.info("about_to_fail")
    raise RuntimeError("deliberate failure for the logging tests")


def enqueue(request: HttpRequest) -> JsonResponse:
    job = django_rq.get_queue("default").enqueue(log_and_return, request.GET.get("value", "hello"))
    return JsonResponse({"job_id": job.id})


def pid(request: HttpRequest) -> JsonResponse:
    """Which gunicorn worker answered."""
    return JsonResponse({"pid": os.getpid()})


def slow(request: HttpRequest) -> JsonResponse:
    """A deliberately slow view: holds its request thread until the file ``?release=`` exists (60 s at most)."""
    release = Path(request.GET["release"])
    logger.info("slow_view_started", pid=os.getpid(), thread=threading.get_ident())
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return JsonResponse({"released": release.exists()})


def enqueue_failing(request: HttpRequest) -> JsonResponse:
    job = django_rq.get_queue("default").enqueue(failing_job, "deliberate failure for the error-reporting tests")
    return JsonResponse({"job_id": job.id})


def fail_holding_secrets(request: HttpRequest) -> HttpResponse:
    """Fail with every secret of the configuration in a local variable, and some in the message."""
    database = settings.DATABASES["default"]
    redis_url = settings.REDIS_URL
    secret_key = settings.SECRET_KEY
    tokens = [settings.HEALTHCHECK_TOKEN, settings.METRICS_TOKEN]
    raise RuntimeError(f"cannot reach {redis_url} or {database['HOST']} with {tokens} and {len(secret_key)}")


urlpatterns = [
    path("__test__/fail", fail),
    path("__test__/fail-holding-secrets", fail_holding_secrets),
    path("__test__/enqueue", enqueue),
    path("__test__/pid", pid),
    path("__test__/slow", slow),
    path("__test__/enqueue-failing", enqueue_failing),
    *project_urlpatterns,
]
