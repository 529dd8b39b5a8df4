"""One scrape: the replica's metrics in Prometheus's text format.

Four sources, collected afresh for each scrape:

- requests and health checks (``apps.metrics.instruments``), and any metric the project defines
  with prometheus-client: under gunicorn, every worker's files added up (prometheus-client's
  ``MultiProcessCollector``, read under the directory's shared lock,
  ``apps.common.multiprocess_metrics``); in a single process, prometheus-client's default registry;
- process basics per process of the replica (``apps.metrics.processes``);
- rq's queues, registries, workers and job counts, read from Redis within the probe deadline
  (``apps.metrics.queues``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from apps.common import multiprocess_metrics
from apps.metrics import processes, queues


class _ReplicaFiles:
    """Every worker's files of the replica, added up; never while the master folds dead workers' files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        with multiprocess_metrics.reading(self.path):
            return list(MultiProcessCollector(None, str(self.path)).collect())


def render() -> tuple[bytes, str]:
    """The body and content type of one scrape."""
    path = multiprocess_metrics.directory()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReplicaFiles(path) if path is not None else REGISTRY)
    registry.register(processes.ReplicaProcesses(gunicorn=path is not None))
    registry.register(queues.RqCollector())
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
