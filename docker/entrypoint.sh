#!/usr/bin/env bash
# The image's entrypoint: run the given command as the container's main process.
#
# - No arguments, or only options (`docker run IMAGE --workers 4`): gunicorn with those options.
# - Anything else runs as given: `manage.py migrate`, `manage.py rqworker default`, `bash`.
# `exec` replaces this shell, so the command receives the stop signal (SIGTERM) directly and
# can shut down gracefully. Migrations are not run here: two replicas starting together would
# race; compose runs them once in the `migrate` service, a deploy runs them as a release step.
set -euo pipefail

if [[ $# -eq 0 || "$1" == -* ]]; then
  set -- gunicorn --config gunicorn.conf.py "$@"
fi

if [[ "$1" == gunicorn ]]; then
  # gunicorn parses WEB_CONCURRENCY with int() as it starts, before gunicorn.conf.py validates
  # the environment: report a bad value the readable way (every problem, exit 2) first, and
  # drop an empty one, which the contract treats as unset and int() would crash on.
  python -m config.startup
  if [[ -z "${WEB_CONCURRENCY:-}" ]]; then
    unset WEB_CONCURRENCY
  fi
fi

exec "$@"
