#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from config.env import ConfigurationError
    from config.startup import exit_on_bad_configuration

    try:
        settings.INSTALLED_APPS  # noqa: B018 - import (and so validate) the settings now
    except ConfigurationError as error:
        exit_on_bad_configuration(error)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
