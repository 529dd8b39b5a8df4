"""The queue dashboard (django-rq's views, under ``<admin>/django_rq/``) behind an explicit permission.

django-rq lets any staff user read and control every job: its arguments and tracebacks, requeue,
delete, empty a queue. Here each of its views also needs the ``django_rq.admin`` permission
("Access admin page"), which superusers have; a staff user without it gets 403.

Its stats API compares tokens with ``secrets.compare_digest`` on text, which raises ``TypeError``
(an anonymous, repeatable 500) for any non-ASCII token, and routes a token in the URL even when
none is configured. Here the JSON view is our own: the permission, or a token compared as bytes;
and the token in the URL is routed only when ``RQ_API_TOKEN`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path
from django.views.decorators.cache import never_cache
from django_rq import stats_views, urls
from django_rq.utils import get_statistics

from apps.common.tokens import bearer_token, same_token

PERMISSION = "django_rq.admin"
View = Callable[..., HttpResponse]


def may_manage_queues(user: Any) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(PERMISSION))


def guarded(view: View) -> View:
    """Anonymous and non-staff users go to the admin login (as django-rq does); staff need the permission."""
    return staff_member_required(permission_required(PERMISSION, raise_exception=True)(view))


@never_cache
def stats_json(request: HttpRequest, token: str | None = None) -> JsonResponse:
    """django-rq's queue statistics: for a user with the permission, or the configured token."""
    presented = token or bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
    if may_manage_queues(request.user) or same_token(presented, getattr(settings, "RQ_API_TOKEN", "")):
        return JsonResponse(get_statistics())
    return JsonResponse(
        {"error": True, "description": "Log in with the queue permission, or send the token."}, status=401
    )


def _urlpatterns() -> list[URLPattern]:
    patterns = [path("stats.json", stats_json, name="home_json")]
    if getattr(settings, "RQ_API_TOKEN", ""):
        patterns.append(path("stats.json/<str:token>/", stats_json, name="home_json"))
    if getattr(stats_views, "RQCollector", None) is not None:  # prometheus_client installed
        patterns.append(path("metrics", guarded(stats_views.prometheus_metrics), name="metrics"))
    return patterns + urls.get_admin_urlpatterns(view_wrapper=guarded)


app_name = "django_rq"  # the names django-rq's templates reverse ({% rq_url 'jobs' %})
urlpatterns = _urlpatterns()
