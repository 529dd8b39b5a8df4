"""Drain on SIGTERM (``DRAIN_SECONDS``): leave the load balancer's rotation before stopping.

On SIGTERM gunicorn's master closes its listeners and starts its graceful shutdown at once: a load
balancer that has not yet noticed sees refused connections, not a 503. With ``DRAIN_SECONDS`` > 0:

1. SIGTERM: the replica is marked draining (``apps.common.draining``). ``/readyz`` and
   ``/healthz`` answer 503 ``{"status": "draining"}`` on both ports; every other request is
   served as before, on listeners that stay open.
2. ``DRAIN_SECONDS`` later, or at a second SIGTERM, gunicorn's own SIGTERM handling runs: its
   graceful shutdown (up to ``graceful_timeout``), unchanged.

With ``DRAIN_SECONDS`` = 0 the first SIGTERM goes straight to gunicorn, as before (readiness
turns 503 for whatever the probe listener still answers meanwhile). SIGINT and SIGQUIT (the fast
stops) are left alone.

The handler gunicorn's master installed for SIGTERM is wrapped, not replaced: the wrapper calls
it when the drain is over, so gunicorn's shutdown path is its own. The wrapper itself only sets a
byte and starts a thread (a signal handler must not log: gunicorn's does not either).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import structlog

from apps.common import draining

logger = structlog.get_logger("config.drain")


def install(seconds: float) -> None:
    """Wrap the master's SIGTERM handler; call once gunicorn has installed its own (``when_ready``)."""
    gunicorn_handler: Any = signal.getsignal(signal.SIGTERM)
    if not callable(gunicorn_handler):
        raise RuntimeError("no SIGTERM handler to wrap: call install() from gunicorn's when_ready hook")

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if seconds <= 0 or draining.is_draining():
            draining.set_draining()
            gunicorn_handler(signum, frame)
            return
        draining.set_draining()
        threading.Thread(target=_drain, args=(seconds,), name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)


def _drain(seconds: float) -> None:
    logger.info("drain_started", seconds=seconds)
    time.sleep(seconds)
    logger.info("drain_finished", seconds=seconds)
    # Through the wrapper again: the replica is draining, so gunicorn's handler runs now.
    os.kill(os.getpid(), signal.SIGTERM)
