"""A Redis connection in use that another thread can cut: how a runner ends a read that hangs.

A probe or a scrape reads Redis on a worker thread; when its deadline passes, the runner calls
``interrupt()`` from another thread. Shutting the socket down makes the blocked read fail at once,
where closing it from outside the reading thread would not.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any


class Cuttable:
    """Holds the connection in use (``holding``) so that ``cut()`` can shut its socket down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Any = None

    @contextlib.contextmanager
    def holding(self, connection: Any) -> Iterator[None]:
        """Use ``connection`` in the block; on any failure it is disconnected (no half-read reply is reused)."""
        with self._lock:
            self._running = connection
        try:
            yield
        except BaseException:
            connection.disconnect()
            raise
        finally:
            with self._lock:
                self._running = None

    def cut(self) -> None:
        """Shut the socket of the connection in use down, if there is one."""
        with self._lock:
            sock = getattr(self._running, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
