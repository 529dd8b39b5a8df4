"""Settings for subprocesses that need the test-only URLs (a view that fails, one that enqueues)."""

from config.settings.test import *  # noqa: F403

ROOT_URLCONF = "tests.urls"
