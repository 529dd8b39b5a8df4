"""Probe routes. HealthProbeMiddleware resolves against this module before host validation."""

from django.urls import re_path

from apps.common.probe_paths import HEALTHZ, LIVEZ, READYZ, path_pattern
from apps.health import views

# No trailing slash in the contract; a trailing slash answers the same (no redirect hop).
urlpatterns = [
    re_path(path_pattern(LIVEZ), views.livez, name=LIVEZ),
    re_path(path_pattern(READYZ), views.readyz, name=READYZ),
    re_path(path_pattern(HEALTHZ), views.healthz, name=HEALTHZ),
]
