"""gunicorn's gthread worker, except that the least-busy worker accepts the next connection.

gthread workers ``accept()`` greedily and leave the choice to the kernel, which often hands a
burst of connections to one worker (gunicorn#2817, #3433, #2192, #1984). With a few persistent
connections (a load balancer's, a proxy's upstream keep-alive, a client's pool), one worker then
serves them all while the other idles: half the capacity, twice the latency. No gunicorn setting
spreads persistent connections evenly (docs/performance.md has the measurements): keep-alive off
and ``worker_connections = threads`` close every connection, and gunicorn 27 then lingers up to
2 s on the main thread for each client that does not close its end; ``reuse_port`` hashes
connections to workers at random: 6 or more of 8 on one worker in 29% of bursts.

So each worker publishes how many connections it holds in a small table shared by the workers of
one master (anonymous shared memory, mapped in the master before it forks), and:

- listens for new connections only while it holds no more than the least-busy of its live
  siblings: a burst of 8 ends 4 and 4, 2 ends 1 and 1;
- while it holds more than one connection above the least-busy sibling, answers one request at a
  time with ``Connection: close`` (RFC 9112 9.6: the client knows, before it sends anything else,
  to open a new connection, which a sibling then takes). Only a connection open for
  ``SETTLE_SECONDS`` is handed over: while clients connect or disconnect, the counts move faster
  than they are published. This evens out what accepting alone cannot: a replacement worker
  starts with no connection while the survivor keeps every persistent one.

Everything else is gthread's own code: keep-alive, timeouts, graceful shutdown. Not with
``reuse_port``: each worker would hold back from a queue that no sibling can take over.

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
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

SLOTS = 64  # workers alive at once, at most (WEB_CONCURRENCY plus a few being replaced)
STALE_SECONDS = 3.0
RECHECK_SECONDS = 0.01
# Only a connection open this long is handed over: while connections are being opened (or closed)
# the counts move faster than they are published, and the imbalance they show is not real.
SETTLE_SECONDS = 1.0
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
    """gthread that accepts only while no live sibling holds fewer connections, and sheds its excess."""

    slot: int = 0
    _holding_back = False
    _shedding: Any = None  # the connection whose response says "Connection: close", one at a time

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if cfg.reuse_port:
            raise SystemExit("config.workers.BalancedThreadWorker does not work with reuse_port: leave it off")

    def _publish(self) -> None:
        _write(self.slot, os.getpid(), self.nr_conns)

    def _least_busy(self) -> bool:
        fewest = least_busy_sibling(self.slot)
        return fewest is None or self.nr_conns <= fewest

    def init_process(self) -> None:
        self._shed_lock = threading.Lock()
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

    def enqueue_req(self, conn: Any) -> None:
        if not hasattr(conn, "opened_at"):
            conn.opened_at = time.monotonic()
        super().enqueue_req(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        # On a thread of the pool; finish_request() (main thread) clears the mark.
        with self._shed_lock:
            if self._shedding is None and self.alive and time.monotonic() - conn.opened_at >= SETTLE_SECONDS:
                fewest = least_busy_sibling(self.slot)
                if fewest is not None and self.nr_conns > fewest + 1:
                    self._shedding = conn
                    req.must_close = True  # gunicorn answers "Connection: close" and closes after
        return bool(super().handle_request(req, conn))

    def finish_request(self, conn: Any, fs: Any) -> None:
        super().finish_request(conn, fs)
        if conn is self._shedding:
            self._shedding = None

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        self._publish()
        super().wait_for_and_dispatch_events(min(timeout, RECHECK_SECONDS) if self._holding_back else timeout)
