"""ROOT_URLCONF under ``bench.settings``: the production URLs plus the limit probe and the trivial view."""

from django.urls import include, path, re_path

from apps.common.probe_paths import path_pattern
from bench import views
from bench.paths import LIMIT_PATH, TRIVIAL_PATH

urlpatterns = [
    re_path(path_pattern(LIMIT_PATH), views.limit, name="bench-limit"),
    path(TRIVIAL_PATH, views.trivial, name="bench-trivial"),
    path("", include("config.urls")),
]
