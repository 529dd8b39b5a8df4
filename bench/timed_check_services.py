"""``manage.py check_services`` with a stopwatch: how long it takes once Django has started.

Does what ``manage.py`` does (same settings module, same command-line entry point) and
prints one extra line on stdout, ``BENCH_TIMING {...}``, with the seconds spent starting
Django and the seconds from then until the command had answered. The parent process times
the whole process too, which shows whether anything (a stuck probe thread) delays the exit.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

started = time.monotonic()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")


def main() -> int:
    import django
    from django.core.management import execute_from_command_line

    django.setup()
    ready = time.monotonic()
    code: int | str | None = 0
    try:
        execute_from_command_line(["manage.py", "check_services", *sys.argv[1:]])
    except SystemExit as exit_:
        code = exit_.code
    answered = time.monotonic()
    sys.stdout.write("\n")
    timing = {"startup_s": ready - started, "answer_s": answered - ready, "exit": code}
    print("BENCH_TIMING " + json.dumps(timing), flush=True)
    return int(code or 0) if isinstance(code, int | None) else 2


if __name__ == "__main__":
    sys.exit(main())
