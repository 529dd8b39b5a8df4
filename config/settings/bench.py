"""Benchmark settings: production settings plus one bench-only probe, ``/bench/limit``.

Only ``bench/healthz.py`` uses this module. The limit view is the near-physical limit of a
Django health check (one ``SELECT 1``, one ``PING``, nothing else); to compare it fairly with
``/livez`` and ``/healthz`` it is answered at the same place in the middleware chain and its
access line is demoted like theirs. Nothing else differs from ``config.settings.base``.
"""

import re

from config import logging as logging_config
from config.settings.base import *  # noqa: F403
from config.settings.base import MIDDLEWARE

ROOT_URLCONF = "bench.urls"
MIDDLEWARE = [
    "bench.middleware.BenchProbeMiddleware" if entry == "apps.health.middleware.HealthProbeMiddleware" else entry
    for entry in MIDDLEWARE
]
# gunicorn's access filter looks this pattern up on every line: the limit probe is logged like a probe.
logging_config.HEALTH_PROBE_PATH = re.compile(r"^/(livez|readyz|healthz|bench/limit)/?(\?.*)?$")
