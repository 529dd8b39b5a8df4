"""Job outcomes and durations, counted in Redis by the rq workers and read back by ``/metrics``.

Workers often run in other pods than web, and come and go: a worker that exposed its own metrics
port would need a scrape target of its own, and its counts would vanish with it. So each worker
adds every finished job to a hash in the queue's own Redis (one pipelined round trip per job), and
the web side reads the hashes at scrape time, next to the queue lengths. The counts outlive any
worker; only a Redis that loses its data resets them (which Prometheus's ``rate()`` handles as a
counter reset).

One hash per queue, ``metrics:rq:jobs:<queue>``, fields per outcome: ``<outcome>:count`` (jobs),
``<outcome>:sum`` (seconds) and ``<outcome>:le:<bound>`` (jobs whose duration fell in that
bucket and no lower one). Plain Redis commands; no rq internals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KEY = "metrics:rq:jobs:{queue}"
FINISHED, FAILED, RETRIED, STOPPED = "finished", "failed", "retried", "stopped"
OUTCOMES = (FINISHED, FAILED, RETRIED, STOPPED)
# Upper bounds in seconds: from a quick job to rq's default 180 s timeout and well past it.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0, math.inf)


def key(queue: str) -> str:
    return KEY.format(queue=queue)


def bound_label(bound: float) -> str:
    """A bucket's bound as Prometheus writes it (``0.5``, ``10.0``, ``+Inf``)."""
    return "+Inf" if bound == math.inf else repr(float(bound))


def record(redis: Any, queue: str, outcome: str, seconds: float | None) -> None:
    """Count one job of ``queue`` that ended as ``outcome`` after ``seconds`` (``None``: unknown)."""
    with redis.pipeline(transaction=False) as pipe:
        name = key(queue)
        pipe.hincrby(name, f"{outcome}:count", 1)
        if seconds is not None and seconds >= 0:
            bound = next(b for b in BUCKETS if seconds <= b)
            pipe.hincrbyfloat(name, f"{outcome}:sum", seconds)
            pipe.hincrby(name, f"{outcome}:le:{bound_label(bound)}", 1)
        pipe.execute()


@dataclass(frozen=True)
class Outcome:
    """One outcome of one queue: how many jobs, their total duration, the cumulative buckets."""

    count: int = 0
    seconds: float = 0.0
    buckets: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # (bound label, jobs at or below)


def parse(fields: Mapping[bytes | str, bytes | str]) -> dict[str, Outcome]:
    """A queue's hash (``HGETALL``) as one ``Outcome`` per known outcome; unknown fields are skipped."""
    text = {_text(name): _text(value) for name, value in fields.items()}
    parsed = {}
    for outcome in OUTCOMES:
        count = _number(text.get(f"{outcome}:count"), int)
        running, buckets = 0, []
        for bound in BUCKETS:
            label = bound_label(bound)
            running += _number(text.get(f"{outcome}:le:{label}"), int)
            buckets.append((label, running))
        parsed[outcome] = Outcome(count, _number(text.get(f"{outcome}:sum"), float), tuple(buckets))
    return parsed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(value: str | None, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value) if value is not None else kind(0)
    except ValueError:
        return kind(0)
