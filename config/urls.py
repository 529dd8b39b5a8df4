"""URL configuration. The probe paths are also answered early by HealthProbeMiddleware.

``/`` is left for the service's own views: only while DEBUG is true does it show a start page
with links to the admin, the queue dashboard and the probes.
"""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("apps.health.urls")),
    # django-rq's views behind the queue permission; its token API only with a token configured.
    path(settings.ADMIN_URL + "django_rq/", include("apps.core.queue_dashboard")),
    path(settings.ADMIN_URL, admin.site.urls),
    path("", include("apps.core.urls")),
]
