"""Test-only helpers on top of ``harness`` (the real processes and servers the tests start)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


def caches_at(redis_url: str) -> dict[str, Any]:
    """The project's CACHES with the app's Redis (cache and probe) moved to ``redis_url``."""
    from django.conf import settings

    caches: dict[str, Any] = dict(settings.CACHES)
    caches["default"] = {**caches["default"], "LOCATION": redis_url}
    return caches


@contextlib.contextmanager
def preserved_environ() -> Iterator[None]:
    """Restore ``os.environ`` exactly as it was, whatever the block (or ``read_dotenv``) set."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# Contract names (/work/shared/DESIGN.md) that another branch declares: helper/serving adds
# PROBE_PORT and DRAIN_SECONDS to config/env.py. Until it lands, the manifests and docs may name
# them; once declared, this set is empty by itself (and can go).
def pending_variables() -> frozenset[str]:
    from config.env import VARIABLES

    return frozenset({"PROBE_PORT", "DRAIN_SECONDS"} - {variable.name for variable in VARIABLES})
