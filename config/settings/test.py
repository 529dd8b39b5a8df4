"""Test settings: the base settings plus speed knobs, and local defaults for the services.

Real environment variables still win, so CI can point the suite elsewhere.
"""

import os

_TEST_DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/app",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "DJANGO_SECRET_KEY": "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "DJANGO_ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_DEBUG": "false",
    "LOG_FORMAT": "console",
    # A test that expects "ok" must not fail because a loaded machine took longer than the
    # production deadline to open its first connections. Tests of the deadline set their own.
    "HEALTHCHECK_TIMEOUT": "5",
}
for _name, _value in _TEST_DEFAULTS.items():
    if not os.environ.get(_name):
        os.environ[_name] = _value

from config.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The manifest storage needs collectstatic; tests render admin pages without it.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# Serve static files from the apps, as in development (no STATIC_ROOT before collectstatic).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
