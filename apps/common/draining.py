"""Whether this replica is draining: set by gunicorn's master on SIGTERM, read by every worker.

The flag is one byte of anonymous shared memory, mapped when this module is first imported.
gunicorn's master imports it (``gunicorn.conf.py`` does) before it forks any worker, so the master
and every worker it forks, now or later, see the same byte: the master sets it, the readiness
views read it. No signal, no file, no lock: one writer, one byte. A process that was not forked
by such a master (runserver, ``manage.py``, the tests) has a flag of its own that stays clear.
"""

from __future__ import annotations

import mmap

# MAP_SHARED | MAP_ANONYMOUS: shared with the processes forked after this line runs.
_FLAG = mmap.mmap(-1, 1)


def set_draining(draining: bool = True) -> None:
    _FLAG[0] = 1 if draining else 0


def is_draining() -> bool:
    return _FLAG[0] == 1
