"""The probe paths and ``/metrics``: declared here once, imported by the URLs, the settings, logging and the bench."""

from __future__ import annotations

import re
from collections.abc import Iterable

LIVEZ = "livez"
READYZ = "readyz"
HEALTHZ = "healthz"
PROBE_PATHS = (LIVEZ, READYZ, HEALTHZ)
# Prometheus scrapes: like the probes, answered early (any Host, plain HTTP) and quiet in the
# access log, but only for the METRICS_TOKEN (apps.metrics).
METRICS = "metrics"
EARLY_PATHS = (*PROBE_PATHS, METRICS)


def path_pattern(path: str) -> str:
    """A URL-conf regex for ``path``: no trailing slash in the contract, one is answered the same.

    ``\\Z``, never ``$``: ``$`` also matches before a trailing newline, so ``/healthz%0A`` would be
    exempt from the HTTPS redirect (``SECURE_REDIRECT_EXEMPT`` searches with these patterns).
    """
    return rf"^{re.escape(path)}/?\Z"


def exact_paths(paths: Iterable[str]) -> frozenset[str]:
    """The request paths that name one of ``paths``, as ``path_pattern`` matches them: ``/x`` and ``/x/``."""
    return frozenset(f"/{path}{slash}" for path in paths for slash in ("", "/"))
