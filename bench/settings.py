"""Benchmark settings: production settings plus one bench-only probe, ``/bench/limit``.

Only ``bench/healthz.py`` uses this module. The limit view is the near-physical limit of a
Django health check (one ``SELECT 1``, one ``PING``, nothing else); to compare it fairly with
``/livez`` and ``/healthz`` it is answered at the same place in the middleware chain and its
access line is demoted like theirs. Nothing else differs from ``config.settings.base``.
"""

from apps.common.probe_paths import EARLY_PATHS
from bench.paths import LIMIT_PATH
from config.logging import build_logging_config
from config.settings.base import *  # noqa: F403
from config.settings.base import LOG_FORMAT, LOG_LEVEL, MIDDLEWARE

ROOT_URLCONF = "bench.urls"
MIDDLEWARE = [
    "bench.middleware.BenchProbeMiddleware" if entry == "apps.health.middleware.HealthProbeMiddleware" else entry
    for entry in MIDDLEWARE
]
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT, quiet_paths=(*EARLY_PATHS, LIMIT_PATH))
