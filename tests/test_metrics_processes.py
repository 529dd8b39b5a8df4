"""``/metrics`` with real processes: gunicorn with two workers, workers that restart, rq workers
that count their jobs, and a real Prometheus (Debian's package) scraping all of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import django_rq
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Retry

from apps.common import job_metrics
from apps.metrics import queues
from harness.processes import child_pids, wait_until
from harness.project import ROOT, Server, project_env, run_manage
from harness.prometheus import Prometheus, Target, prometheus_available
from harness.servers import BlackHole

pytestmark = pytest.mark.slow

TOKEN = "metrics-token-0123456789-abcdefghijklmnop"
AUTHORISED = {"Authorization": f"Bearer {TOKEN}"}
PID_ROUTE = "/__test__/pid"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def documented_alerts() -> list[str]:
    """The PromQL expressions of docs/metrics.md's Alerts section (a line indented continues one)."""
    section = (ROOT / "docs" / "metrics.md").read_text().split("## Alerts", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    expressions: list[str] = []
    for line in block.splitlines():
        if line.startswith(" ") and expressions:
            expressions[-1] += " " + line.strip()
        elif line and not line.startswith("#"):
            expressions.append(line)
    return expressions


def server_env(**overrides: str) -> dict[str, str]:
    env = project_env(DJANGO_SETTINGS_MODULE="tests.settings", METRICS_TOKEN=TOKEN, WEB_CONCURRENCY="2")
    return {**env, **overrides}


def scrape(server: Server) -> Samples:
    response = server.get("/metrics", AUTHORISED)
    assert response.status == 200, response.body[:300]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


def requests_counted(samples: Samples, route: str = PID_ROUTE) -> float:
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "http_requests_total" and ("route", route) in labels
    )


def spread_over_workers(server: Server, requests: int) -> set[int]:
    """``requests`` requests, each on a new connection; the worker pids that answered them."""
    pids = set()
    for _ in range(requests):
        response = server.get(PID_ROUTE)
        assert response.status == 200
        pids.add(int(response.json()["pid"]))  # type: ignore[index]
    return pids


def metrics_directory(server: Server) -> Path:
    (line,) = wait_until(
        lambda: [event for event in server.events() if event.get("event") == "metrics_multiprocess"],
        10,
        "the master's metrics_multiprocess line",
    )
    return Path(line["directory"])


def test_one_scrape_reports_the_whole_replica() -> None:
    with Server(server_env()) as server:
        assert server.process is not None
        pids: set[int] = set()
        sent = 0
        while len(pids) < 2 or sent < 40:  # until both workers have answered some
            pids |= spread_over_workers(server, 10)
            sent += 10
            assert sent <= 400, "one worker answered everything"
        workers = child_pids(server.process.pid)
        assert pids <= workers
        for _ in range(6):  # whichever worker answers the scrape
            samples = scrape(server)
            assert requests_counted(samples) == sent
        # Process basics for the master and each worker, labelled by pid and role.
        resident = {
            dict(labels)["pid"]: dict(labels)["role"]
            for name, labels in samples
            if name == "process_resident_memory_bytes"
        }
        assert resident == {str(server.process.pid): "arbiter", **{str(pid): "worker" for pid in workers}}
        directory = metrics_directory(server)
        assert directory.is_dir()
    assert not directory.exists()  # the replica's directory goes with it


def test_restarting_workers_lose_no_count_and_the_directory_does_not_grow() -> None:
    """Workers recycled every 10 requests (gunicorn's max_requests): each exit is marked and folded."""
    with Server(server_env(), extra_args=("--max-requests", "10", "--max-requests-jitter", "0")) as server:
        assert server.process is not None
        master = server.process.pid
        directory = metrics_directory(server)
        answered: set[int] = set()
        sizes = []
        for _ in range(3):
            answered |= spread_over_workers(server, 60)
            sizes.append(sum(file.stat().st_size for file in directory.glob("*.db")))
        assert len(answered) >= 10, "the workers were recycled"

        def settled() -> bool:
            """Every pid's file belongs to a live worker, and the rest is in the archive files."""
            owners = {file.stem.rpartition("_")[2] for file in directory.glob("*.db")}
            return owners - {"archive"} <= {str(pid) for pid in child_pids(master)}

        wait_until(settled, 30, "the dead workers' files to be folded")
        # Per live worker one file per type in use (counter, histogram, live gauge, and django-rq's
        # summary), one archive per type that adds up: 11 at most, after some 18 generations of workers.
        assert len(list(directory.glob("*.db"))) <= 2 * 4 + 3
        assert sizes[2] <= sizes[0] + 2 * 3 * 65536  # at most one generation of fresh 64 KiB files
        # The scrape counts itself as a request and may recycle a worker too: the total holds.
        assert requests_counted(scrape(server)) == 180


@pytest.fixture
def redis() -> Iterator[Redis]:
    """The test run's Redis, where the in-process enqueue puts jobs for the worker subprocess."""
    connection: Redis = django_rq.get_connection("default")

    def clear() -> None:
        keys = [*connection.keys("rq:*"), job_metrics.key("default")]
        connection.delete(*keys)

    clear()
    yield connection
    clear()


def test_the_worker_counts_each_jobs_outcome_and_duration(redis: Redis) -> None:
    queue = django_rq.get_queue("default", commit_mode="auto")
    queue.enqueue("tests.jobs.log_and_return", "done")
    queue.enqueue("tests.jobs.fail", "for good")
    queue.enqueue("tests.jobs.fail", "twice", retry=Retry(max=1))
    result = run_manage("rqworker", "default", "--burst", env=project_env(REDIS_URL=settings.REDIS_URL), timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]

    (state,) = queues.snapshot(timeout=5).queues
    assert state.outcomes["finished"].count == 1
    assert state.outcomes["failed"].count == 2
    assert state.outcomes["retried"].count == 1
    # Each counted job has its duration in a bucket; the +Inf bucket is the number of jobs timed.
    assert state.outcomes["finished"].buckets[-1] == ("+Inf", 1)
    assert state.outcomes["failed"].buckets[-1] == ("+Inf", 2)
    assert 0 < state.outcomes["finished"].seconds < 30


@pytest.mark.skipif(
    not prometheus_available(), reason="Prometheus is not installed (Debian: apt-get install prometheus)"
)
def test_a_real_prometheus_scrapes_the_replica(redis: Redis, black_hole: BlackHole) -> None:
    """Prometheus 2.x with the Bearer token in its scrape config, against gunicorn with two workers."""
    web_redis = settings.REDIS_URL  # jobs enqueued by the server run in the burst worker below
    healthy = Server(server_env(REDIS_URL=web_redis)).start()
    # Its queues (and cache) black-holed: the rq part of the scrape fails within the deadline.
    dark = Server(server_env(REDIS_URL=f"redis://127.0.0.1:{black_hole.port}/0", HEALTHCHECK_TIMEOUT="0.5"))
    dark.start()
    targets = [Target("web", healthy.port, TOKEN), Target("dark", dark.port, TOKEN, interval="2s", timeout="2s")]
    try:
        with Prometheus(targets) as prometheus:
            pids: set[int] = set()
            sent = 0
            while len(pids) < 2 or sent < 30:
                pids |= spread_over_workers(healthy, 10)
                sent += 10
            assert healthy.get("/readyz").status == 200

            def reads(expression: str, expected: float) -> bool:
                return prometheus.value(expression) == expected

            wait_until(lambda: reads(f'sum(http_requests_total{{job="web",route="{PID_ROUTE}"}})', sent), 60, "N")
            wait_until(lambda: reads('min(health_check_up{job="web"})', 1), 60, "the health gauges at 1")
            assert prometheus.value('count(health_check_up{job="web"})') == 2  # db and redis

            finished = 'sum(rq_jobs_total{job="web",outcome="finished"})'
            wait_until(lambda: prometheus.value(finished) is not None, 60, "the job counters")
            before = prometheus.value(finished)
            assert healthy.get("/__test__/enqueue").status == 200
            worker = run_manage("rqworker", "default", "--burst", env=project_env(REDIS_URL=web_redis), timeout=90)
            assert worker.returncode == 0, worker.stderr[-2000:]
            wait_until(
                lambda: (prometheus.value(finished) or 0) > (before or 0), 60, "the finished-job counter to move"
            )

            wait_until(lambda: reads('rq_scrape_ok{job="dark"}', 0), 60, "the dark replica's rq failure")
            assert prometheus.value('up{job="dark"}') == 1  # the scrape itself succeeded
            assert prometheus.value('rq_scrape_error{job="dark",error="timeout"}') == 1
            # Measured where the deadline is enforced: in the replica, around the rq read.
            took = prometheus.value('rq_scrape_duration_seconds{job="dark"}')
            assert took is not None
            assert took <= 0.5 + 0.25
            assert prometheus.value('sum(process_resident_memory_bytes{job="dark"}) > 0') is not None

            # docs/metrics.md's alerts are valid PromQL over these series, and quiet while all is well.
            alerts = documented_alerts()
            assert len(alerts) >= 8
            for expression in alerts:
                assert prometheus.query(expression.replace('job="django-service"', 'job="web"')) is not None
            readiness_failing, *_ = alerts
            assert prometheus.query(readiness_failing.replace('job="django-service"', 'job="web"')) == []
    finally:
        healthy.stop()
        dark.stop()
