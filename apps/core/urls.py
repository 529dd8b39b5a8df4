"""``/``: the development start page while DEBUG is true, nothing otherwise (the service's own views go here)."""

from django.conf import settings
from django.urls import URLPattern, path

from apps.core.views import start_page

urlpatterns: list[URLPattern] = [path("", start_page, name="start-page")] if settings.DEBUG else []
