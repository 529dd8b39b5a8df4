"""What ``BenchProbeMiddleware`` answers early: the production probes plus the limit probe."""

from django.urls import include, path, re_path

from bench import views

urlpatterns = [
    re_path(r"^bench/limit/?$", views.limit, name="bench-limit"),
    path("", include("apps.health.urls")),
]
