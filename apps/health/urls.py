"""Probe routes. HealthProbeMiddleware resolves against this module before host validation."""

from django.urls import re_path

from apps.health import views

# No trailing slash in the contract; a trailing slash answers the same (no redirect hop).
urlpatterns = [
    re_path(r"^livez/?$", views.livez, name="livez"),
    re_path(r"^readyz/?$", views.readyz, name="readyz"),
    re_path(r"^healthz/?$", views.healthz, name="healthz"),
]
