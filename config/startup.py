"""Fail fast on a bad environment: readable lines on stderr, exit status 2, no traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

from config import env
from config.env import ConfigurationError

EXIT_BAD_CONFIGURATION = 2


def exit_on_bad_configuration(error: ConfigurationError) -> NoReturn:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(EXIT_BAD_CONFIGURATION)


def main() -> None:
    """``python -m config.startup``: validate the environment (and ``.env``) and nothing else.

    Exit 0 when it is valid, 2 with one line per problem when not. The image's entrypoint runs
    it before gunicorn, which parses ``WEB_CONCURRENCY`` itself on import, before
    ``gunicorn.conf.py`` can report a bad value readably.
    """
    env.read_dotenv()
    try:
        env.load()
    except ConfigurationError as error:
        exit_on_bad_configuration(error)


if __name__ == "__main__":
    main()
