"""Process basics (CPU, memory, open file descriptors) for every process of the replica.

prometheus-client's own process collector reports only the process it runs in, and in
multiprocess mode that is whichever worker answered the scrape. So the scrape asks it about each
process of the replica in turn and labels the series with ``pid`` and ``role``: under gunicorn the
master (``arbiter``, the scraping worker's parent) and each of its workers (``worker``, its
children, from ``/proc``); in a single process (runserver), that one (``main``). A worker that
restarts starts new series; sum by ``role`` for the replica's total.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

_collectors: dict[int, ProcessCollector] = {}


def _children(pid: int) -> list[int]:
    """The children of ``pid`` (Linux 3.5+ lists them per thread; gunicorn's master forks from its main one)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(child) for child in listing.read().split()]
    except (OSError, ValueError):
        return []


class ReplicaProcesses:
    """A collector for one scrape: the ``process_*`` families of every process of the replica."""

    def __init__(self, gunicorn: bool) -> None:
        self.gunicorn = gunicorn

    def collect(self) -> Iterable[Metric]:
        pids = [(os.getpid(), "main")]
        if self.gunicorn:
            arbiter = os.getppid()
            pids = [(arbiter, "arbiter"), *((child, "worker") for child in _children(arbiter))]
        families: dict[str, Metric] = {}
        for pid, role in pids:
            collector = _collectors.get(pid)
            if collector is None:
                collector = _collectors[pid] = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for metric in collector.collect():
                family = families.setdefault(metric.name, Metric(metric.name, metric.documentation, metric.type))
                for sample in metric.samples:
                    family.add_sample(sample.name, {**sample.labels, "pid": str(pid), "role": role}, sample.value)
        for gone in set(_collectors) - {pid for pid, _ in pids}:
            _collectors.pop(gone, None)
        return families.values()
