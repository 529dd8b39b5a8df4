"""Fail fast on a bad environment: readable lines on stderr, exit status 2, no traceback."""

from __future__ import annotations

import sys
from typing import NoReturn

from config import env
from config.env import ConfigurationError

EXIT_BAD_CONFIGURATION = 2


# gunicorn's arbiter respawns a worker that exits 2 forever; exit 3 (its WORKER_BOOT_ERROR)
# makes it stop. Only reached when gunicorn runs without gunicorn.conf.py, which validates the
# environment in the master and exits 2 before any worker starts.
_GUNICORN_WORKER_BOOT_ERROR = 3


def exit_on_bad_configuration(error: ConfigurationError) -> NoReturn:
    for problem in error.problems:
        print(problem, file=sys.stderr)
    sys.stderr.flush()
    in_gunicorn_worker = "gunicorn.workers.base" in sys.modules
    raise SystemExit(_GUNICORN_WORKER_BOOT_ERROR if in_gunicorn_worker else EXIT_BAD_CONFIGURATION)


def main() -> None:
    """``python -m config.startup``: validate the environment (and ``.env``) and nothing else.

    Exit 0 when it is valid, 2 with one line per problem when not. The image's entrypoint runs
    it before gunicorn, which parses ``WEB_CONCURRENCY`` itself on import, before
    ``gunicorn.conf.py`` can report a bad value readably.
    """
    try:
        env.load_project_config()
    except ConfigurationError as error:
        exit_on_bad_configuration(error)


if __name__ == "__main__":
    main()
