"""The probe paths: declared here once, imported by the URLs, the settings, logging and the bench."""

from __future__ import annotations

import re

LIVEZ = "livez"
READYZ = "readyz"
HEALTHZ = "healthz"
PROBE_PATHS = (LIVEZ, READYZ, HEALTHZ)


def path_pattern(path: str) -> str:
    """A URL-conf regex for ``path``: no trailing slash in the contract, one is answered the same."""
    return rf"^{re.escape(path)}/?$"
