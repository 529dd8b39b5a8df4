"""``HealthProbeMiddleware`` that also answers ``/bench/limit`` (bench settings only).

Same class, same position in the chain, same debug line: the three benchmarked paths differ
only in their views.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.urls import get_resolver

from apps.health.middleware import HealthProbeMiddleware


class BenchProbeMiddleware(HealthProbeMiddleware):
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        super().__init__(get_response)
        self.resolver = get_resolver("bench.probe_urls")
