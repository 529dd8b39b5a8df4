"""The project's URLs plus test-only views: never part of the production URL conf."""

import django_rq
import structlog
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from tests.jobs import log_and_return

logger = structlog.get_logger("tests.views")


def fail(request: HttpRequest) -> HttpResponse:
    logger.info("about_to_fail")
    raise RuntimeError("deliberate failure for the logging tests")


def enqueue(request: HttpRequest) -> JsonResponse:
    job = django_rq.get_queue("default").enqueue(log_and_return, request.GET.get("value", "hello"))
    return JsonResponse({"job_id": job.id})


urlpatterns = [
    path("__test__/fail", fail),
    path("__test__/enqueue", enqueue),
    *project_urlpatterns,
]
