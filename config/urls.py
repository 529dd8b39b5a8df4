"""URL configuration. The probe paths are also answered early by HealthProbeMiddleware."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("apps.health.urls")),
    path(settings.ADMIN_URL + "django_rq/", include("django_rq.urls")),
    path(settings.ADMIN_URL, admin.site.urls),
]
