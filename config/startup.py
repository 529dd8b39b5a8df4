"""Fail fast on a bad environment: readable lines on stderr, exit status 2, no traceback."""

from __future__ import annotations

import os
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
    raise SystemExit(_GUNICORN_WORKER_BOOT_ERROR if _in_gunicorn_worker() else EXIT_BAD_CONFIGURATION)


def _in_gunicorn_worker() -> bool:
    """Whether a gunicorn worker is booting us (not its master, which may import the app with --preload)."""
    boot = os.path.join("gunicorn", "workers", "base.py")
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "init_process" and frame.f_code.co_filename.endswith(boot):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


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
