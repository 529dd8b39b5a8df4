"""ASGI entry point; a bad environment stops it with readable lines."""

import os

from django.core.asgi import get_asgi_application

from config.env import ConfigurationError
from config.startup import exit_on_bad_configuration

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

try:
    application = get_asgi_application()
except ConfigurationError as error:
    exit_on_bad_configuration(error)
