"""Fail fast on a bad environment: readable lines on stderr, exit status 2, no traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

from config.env import ConfigurationError

EXIT_BAD_CONFIGURATION = 2


def exit_on_bad_configuration(error: ConfigurationError) -> NoReturn:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(EXIT_BAD_CONFIGURATION)
