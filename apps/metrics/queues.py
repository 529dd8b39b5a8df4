"""rq, read from Redis when Prometheus scrapes: queue lengths, registry sizes, live workers, job counts.

The reads run on a single-flight runner (``apps.health.runner``, policy ``JOIN``), so a scrape
behaves like a probe: one daemon thread per process, one run at a time however many scrapes
arrive, and a scrape waits at most ``HEALTHCHECK_TIMEOUT`` (the probe deadline) before it gives
up on the run, which is then cut (its socket shut down). A Redis that refuses, black-holes or
hangs makes the scrape report ``rq_scrape_ok 0`` and the error category on time, every other
metric intact.

Each queue is read with two pipelined round trips of plain Redis commands on a connection of its
own (the queue's URL, rq's socket timeouts, no retries), never through the app's pools and never
through an rq ``Worker`` object (building one raises its pool's socket timeout to minutes). A
worker counts as live while its own key, refreshed by its heartbeats, exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool
from redis.retry import Retry
from rq import worker_registration
from rq.queue import Queue
from rq.registry import DeferredJobRegistry, FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from apps.common import errors, job_metrics
from apps.common.cuttable import Cuttable
from apps.health import runner

REGISTRIES = {
    "started": StartedJobRegistry,
    "failed": FailedJobRegistry,
    "deferred": DeferredJobRegistry,
    "scheduled": ScheduledJobRegistry,
}


@dataclass(frozen=True)
class QueueState:
    name: str
    jobs: int  # waiting in the queue
    registries: dict[str, int]
    workers: int  # registered for the queue, with a live heartbeat key
    outcomes: dict[str, job_metrics.Outcome]


@dataclass(frozen=True)
class Snapshot:
    queues: tuple[QueueState, ...] = ()
    error: str | None = None  # a category of apps.common.errors; None: the read succeeded
    seconds: float = 0.0


class _Reader:
    """The work of one run: every configured queue, read in turn (``run``), or cut (``interrupt``)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._connections: dict[str, Any] = {}
        self._in_use = Cuttable()
        self._cut = False

    def run(self, timeout: float) -> Snapshot:
        self._cut = False
        started = time.perf_counter()
        try:
            states = tuple(self._read(name, url) for name, url in self.urls.items())
        except Exception as exc:  # noqa: BLE001 - any failure is the answer: a category
            category = errors.TIMEOUT if self._cut else errors.categorize(exc)
            return Snapshot(error=category, seconds=time.perf_counter() - started)
        return Snapshot(states, None, time.perf_counter() - started)

    def interrupt(self) -> None:
        self._cut = True
        self._in_use.cut()

    def _read(self, name: str, url: str) -> QueueState:
        registry_keys = [registry.key_template.format(name) for registry in REGISTRIES.values()]
        *counts, members, outcomes = self._commands(
            url,
            [
                ("LLEN", Queue.redis_queue_namespace_prefix + name),
                *(("ZCARD", key) for key in registry_keys),
                ("SMEMBERS", worker_registration.WORKERS_BY_QUEUE_KEY % name),
                ("HGETALL", job_metrics.key(name)),
            ],
        )
        (live,) = self._commands(url, [("EXISTS", *members)]) if members else (0,)
        if isinstance(outcomes, list):  # RESP2 answers HGETALL with a flat list
            outcomes = dict(zip(outcomes[::2], outcomes[1::2], strict=True))
        registries = dict(zip(REGISTRIES, counts[1:], strict=True))
        return QueueState(name, int(counts[0]), registries, int(live), job_metrics.parse(outcomes))

    def _commands(self, url: str, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands``, sent in one go on this URL's connection, which ``interrupt`` can cut."""
        connection = self._connections.get(url)
        if connection is None:
            pool = ConnectionPool.from_url(url, retry=Retry(NoBackoff(), 0))
            connection = self._connections[url] = pool.make_connection()
        with self._in_use.holding(connection):
            connection.send_packed_command(connection.pack_commands(commands))
            return [connection.read_response() for _ in commands]


def _reader() -> runner.SingleFlightRunner[float, Snapshot]:
    # Queues configured by URL, as config/settings/base.py does.
    urls = {name: str(entry["URL"]) for name, entry in settings.RQ_QUEUES.items() if entry.get("URL")}

    def make() -> runner.SingleFlightRunner[float, Snapshot]:
        return runner.SingleFlightRunner(_Reader(urls), name="metrics-rq", policy=runner.Policy.JOIN)

    # Keyed by the queues' URLs: another RQ_QUEUES (override_settings in tests) gets a runner of its own.
    return runner.registered("metrics-rq:" + repr(sorted(urls.items())), make)


def snapshot(timeout: float | None = None) -> Snapshot:
    """rq's state within ``timeout`` (default: ``HEALTHCHECK_TIMEOUT``), or a ``timeout`` snapshot."""
    seconds = settings.HEALTHCHECK_TIMEOUT if timeout is None else timeout
    started = time.perf_counter()
    found = runner.answer_within(_reader(), seconds, seconds)
    return found or Snapshot(error=errors.TIMEOUT, seconds=time.perf_counter() - started)


class RqCollector:
    """A collector for one scrape: rq's families, or ``rq_scrape_ok 0`` and the error category."""

    def collect(self) -> Iterable[Metric]:
        state = snapshot()
        ok = GaugeMetricFamily("rq_scrape_ok", "1 when rq's state was read from Redis within the deadline, else 0.")
        ok.add_metric([], 0 if state.error else 1)
        took = GaugeMetricFamily("rq_scrape_duration_seconds", "How long reading rq's state took.")
        took.add_metric([], state.seconds)
        if state.error:
            failure = GaugeMetricFamily("rq_scrape_error", "Why rq's state could not be read.", labels=["error"])
            failure.add_metric([state.error], 1)
            return [ok, took, failure]
        return [ok, took, *_families(state.queues)]


def _families(queues: Sequence[QueueState]) -> list[Metric]:
    jobs = GaugeMetricFamily("rq_queue_jobs", "Jobs waiting in the queue.", labels=["queue"])
    registry = GaugeMetricFamily(
        "rq_registry_jobs", "Jobs in each of the queue's registries.", labels=["queue", "registry"]
    )
    workers = GaugeMetricFamily("rq_workers", "Live workers registered for the queue.", labels=["queue"])
    total = CounterMetricFamily(
        "rq_jobs", "Jobs that ended, by outcome (counted by the workers).", labels=["queue", "outcome"]
    )
    duration = HistogramMetricFamily(
        "rq_job_duration_seconds", "How long the jobs ran, by outcome.", labels=["queue", "outcome"]
    )
    for queue in queues:
        jobs.add_metric([queue.name], queue.jobs)
        workers.add_metric([queue.name], queue.workers)
        for name, size in queue.registries.items():
            registry.add_metric([queue.name, name], size)
        for outcome, counted in queue.outcomes.items():
            total.add_metric([queue.name, outcome], counted.count)
            duration.add_metric([queue.name, outcome], list(counted.buckets), counted.seconds)
    return [jobs, registry, workers, total, duration]
