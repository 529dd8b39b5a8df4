"""gunicorn's gthread worker, except that the least-busy worker accepts the next connection.

gthread workers ``accept()`` greedily and leave the choice to the kernel, which often hands a
burst of connections to one worker (gunicorn#2817, #3433, #2192, #1984). With a few persistent
connections (a load balancer's, a proxy's upstream keep-alive, a client's pool), one worker then
serves them all while the other idles: half the capacity, twice the latency. No gunicorn setting
spreads persistent connections evenly (docs/performance.md has the measurements): keep-alive off
and ``worker_connections = threads`` close every connection, and gunicorn 27 then lingers up to
2 s on the main thread for each client that does not close its end; ``reuse_port`` hashes
connections to workers at random, 6 of 8 on one worker a quarter of the time.

So each worker publishes how many connections it holds in a small table shared by the workers of
one master (anonymous shared memory, mapped in the master before it forks), and listens for new
connections only while it holds no more than the least-busy of its live siblings. A burst of 8 ends
4 and 4, 2 ends 1 and 1. Everything else is gthread's own code: keep-alive, timeouts, shutdown.

- The master gives each worker a slot before forking it and frees it when the worker exits
  (``assign`` and ``release``, from gunicorn's ``pre_fork`` and ``child_exit`` hooks).
- A worker refreshes its slot on every turn of its loop, at least once a second; a sibling whose
  slot is older than ``STALE_SECONDS`` (stuck, or gone) is ignored, so it never holds the others
  back: gunicorn's own ``timeout`` deals with it.
- A worker that is holding back looks again every ``RECHECK_SECONDS``: connections waiting in the
  shared backlog are never left there longer than that.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # workers alive at once, at most (WEB_CONCURRENCY plus a few being replaced)
STALE_SECONDS = 3.0
RECHECK_SECONDS = 0.01
_ENTRY = struct.Struct("qdq")  # pid (0: free), last refresh (time.monotonic, shared by all processes), connections

# MAP_SHARED | MAP_ANONYMOUS, mapped when gunicorn loads this class in the master: shared with
# every worker it forks.
_table = mmap.mmap(-1, SLOTS * _ENTRY.size)


def _write(slot: int, pid: int, connections: int) -> None:
    _ENTRY.pack_into(_table, slot * _ENTRY.size, pid, time.monotonic(), connections)


def assign(server: Any, worker: Any) -> None:
    """In the master, before the fork: the lowest slot that no live worker holds."""
    taken = {getattr(sibling, "slot", None) for sibling in server.WORKERS.values()}
    free = [slot for slot in range(SLOTS) if slot not in taken]
    if not free:
        raise RuntimeError(f"more than {SLOTS} gunicorn workers at once")
    worker.slot = free[0]
    _write(worker.slot, 0, 0)


def release(worker: Any) -> None:
    """In the master, once the worker has exited: its slot is free again."""
    slot = getattr(worker, "slot", None)
    if slot is not None:
        _write(slot, 0, 0)


def least_busy_sibling(own_slot: int) -> int | None:
    """The fewest connections any live sibling holds, or ``None`` without one."""
    now = time.monotonic()
    counts = [
        connections
        for slot, (pid, refreshed, connections) in enumerate(_ENTRY.iter_unpack(_table))
        if pid and slot != own_slot and now - refreshed < STALE_SECONDS
    ]
    return min(counts, default=None)


class BalancedThreadWorker(ThreadWorker):
    """gthread that listens for new connections only while no live sibling holds fewer."""

    slot: int = 0
    _holding_back = False

    def _publish(self) -> None:
        _write(self.slot, os.getpid(), self.nr_conns)

    def _least_busy(self) -> bool:
        fewest = least_busy_sibling(self.slot)
        return fewest is None or self.nr_conns <= fewest

    def init_process(self) -> None:
        self._publish()
        super().init_process()

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop calls this whenever its own limit (worker_connections) says "accept"
        # while not accepting, so a worker holding back re-decides on every turn of its loop.
        self._holding_back = enabled and self.alive and not self._least_busy()
        super().set_accept_enabled(enabled and not self._holding_back)

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        self._publish()
        if not self._least_busy():
            self._holding_back = True
            super().set_accept_enabled(False)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        self._publish()
        super().wait_for_and_dispatch_events(min(timeout, RECHECK_SECONDS) if self._holding_back else timeout)
