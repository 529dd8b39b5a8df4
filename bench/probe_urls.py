"""What ``BenchProbeMiddleware`` answers early: the production probes plus the limit probe."""

from django.urls import include, path, re_path

from apps.common.probe_paths import path_pattern
from bench import views
from bench.paths import LIMIT_PATH

urlpatterns = [
    re_path(path_pattern(LIMIT_PATH), views.limit, name="bench-limit"),
    path("", include("apps.health.urls")),
]
