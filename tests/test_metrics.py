"""``/metrics`` in process: who gets it, what it counts, and rq's state within the deadline.

Django's test client through the full middleware stack, the real PostgreSQL and Redis, a black
hole and a refused port for the faults. The metrics of this process live in memory, so every
test compares counts before and after what it does.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

import django_rq
import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from apps.common import errors, job_metrics, multiprocess_metrics
from apps.metrics import instruments, queues
from harness.processes import free_port, timed
from harness.servers import BlackHole
from tests.support import caches_at

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789-abcdefghijklmnop"
AUTHORISED = {"Authorization": f"Bearer {TOKEN}"}
MARGIN = 0.25  # the contract's margin over the deadline, as for the probes
QUEUE = "metrics-test"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", headers=AUTHORISED)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_on() -> Iterator[None]:
    with override_settings(METRICS_TOKEN=TOKEN):
        yield


# --- who gets /metrics ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
def test_everyone_gets_a_404_while_the_token_is_unset(client: Client, path: str) -> None:
    assert client.get(path).status_code == 404
    assert client.get(path, headers=AUTHORISED).status_code == 404
    assert client.get(path, headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer t\u00f6ken-with-latin-1",  # never a 500: compared as bytes
    ],
)
def test_anyone_without_the_token_gets_the_ordinary_404(
    client: Client, metrics_on: None, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 404
    assert response.content == client.get("/no-such-page").content  # nothing tells them apart


@override_settings(SECURE_SSL_REDIRECT=True, ALLOWED_HOSTS=["example.com"])
def test_the_token_gets_metrics_for_any_host_over_plain_http(client: Client, metrics_on: None) -> None:
    response = client.get("/metrics", HTTP_HOST="10.1.2.3:8000", headers=AUTHORISED)
    assert response.status_code == 200
    assert b"rq_scrape_ok" in response.content
    # Every other URL is still host-validated and redirected.
    assert client.get("/admin/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_only_get_and_head(client: Client, metrics_on: None) -> None:
    assert client.head("/metrics", headers=AUTHORISED).status_code == 200
    response = client.post("/metrics", headers=AUTHORISED)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert client.post("/metrics").status_code == 404  # without the token: nothing to see


# --- requests --------------------------------------------------------------------------------------


def test_requests_are_counted_by_route_pattern_method_and_status_class(client: Client, metrics_on: None) -> None:
    change = "/admin/auth/user/<path:object_id>/change/"
    before = scrape(client)
    client.get("/admin/login/?next=/admin/")
    client.get("/admin/auth/user/17/change/")  # anonymous: redirected to the login page
    client.get("/admin/auth/user/18/change/")
    client.get("/no-such-page-1")
    client.get("/no-such-page-2")
    client.generic("BREW", "/admin/login/")
    after = scrape(client)

    def delta(**labels: str) -> float:
        return value(after, "http_requests_total", **labels) - value(before, "http_requests_total", **labels)

    assert delta(route="/admin/login/", method="GET", status_class="2xx") == 1
    assert delta(route=change, method="GET", status_class="3xx") == 2
    assert delta(route="<unmatched>", method="GET", status_class="4xx") == 2
    assert delta(route="/admin/login/", method="other", status_class="4xx") == 1
    # One latency observation per request, and never a raw path as a label.
    count = "http_request_duration_seconds_count"
    assert (
        value(after, count, route=change, method="GET", status_class="3xx")
        - value(before, count, route=change, method="GET", status_class="3xx")
        == 2
    )
    routes = {dict(labels).get("route") for name, labels in after if name == "http_requests_total"}
    assert not any(route and ("17" in route or "no-such-page" in route) for route in routes)


def test_probes_and_scrapes_are_not_counted_as_traffic(client: Client, metrics_on: None) -> None:
    before = scrape(client)
    for path in ("/livez", "/readyz", "/healthz"):
        client.get(path)
    after = scrape(client)
    total = sum(v for (name, _), v in after.items() if name == "http_requests_total")
    assert total == sum(v for (name, _), v in before.items() if name == "http_requests_total")


def test_without_the_token_nothing_is_counted(client: Client) -> None:
    client.get("/admin/login/")
    with override_settings(METRICS_TOKEN=TOKEN):
        before = scrape(Client())
        client.get("/admin/login/")  # this client's middleware was loaded with the token unset
        after = scrape(Client())
    labels = {"route": "/admin/login/", "method": "GET", "status_class": "2xx"}
    assert value(after, "http_requests_total", **labels) == value(before, "http_requests_total", **labels)


# --- health checks ---------------------------------------------------------------------------------


def test_every_probe_run_sets_the_status_and_the_latency_and_counts_failures(client: Client, metrics_on: None) -> None:
    assert client.get("/readyz").status_code == 200
    healthy = scrape(client)
    assert value(healthy, "health_check_up", check="db") == 1
    assert value(healthy, "health_check_up", check="redis") == 1
    assert value(healthy, "health_check_duration_seconds_count", check="db") >= 1
    for category in errors.CATEGORIES:  # every category exists from the first run on
        assert ("health_check_failures_total", frozenset({("check", "redis"), ("error", category)})) in healthy

    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{free_port()}/0")):
        assert client.get("/readyz").status_code == 503
        failing = scrape(client)
    assert value(failing, "health_check_up", check="redis") == 0
    assert value(failing, "health_check_up", check="db") == 1
    refused = {"check": "redis", "error": "refused"}
    assert (
        value(failing, "health_check_failures_total", **refused)
        == value(healthy, "health_check_failures_total", **refused) + 1
    )


# --- rq --------------------------------------------------------------------------------------------


@pytest.fixture
def rq_queue(settings) -> Iterator[Redis]:
    """A queue of its own on the test Redis, emptied before and after."""
    url = settings.RQ_QUEUES["default"]["URL"]
    settings.RQ_QUEUES = {QUEUE: {"URL": url, "DEFAULT_TIMEOUT": 300}}
    connection = django_rq.get_connection(QUEUE)

    def clear() -> None:
        keys = [*connection.keys(f"rq:*{QUEUE}*"), *connection.keys(job_metrics.key(QUEUE))]
        if keys:
            connection.delete(*keys)

    clear()
    yield connection
    clear()


def test_rq_queues_registries_and_job_counts_are_read_at_scrape_time(
    client: Client, metrics_on: None, rq_queue: Redis
) -> None:
    queue = django_rq.get_queue(QUEUE, commit_mode="auto")
    for number in range(3):
        queue.enqueue("tests.jobs.log_and_return", str(number))
    failed = queue.enqueue("tests.jobs.fail", "x")
    queue.remove(failed)
    queue.failed_job_registry.add(failed, ttl=60)
    job_metrics.record(rq_queue, QUEUE, job_metrics.FINISHED, 0.3)
    job_metrics.record(rq_queue, QUEUE, job_metrics.FINISHED, 4.0)
    job_metrics.record(rq_queue, QUEUE, job_metrics.FAILED, None)

    samples = scrape(client)
    assert value(samples, "rq_scrape_ok") == 1
    assert value(samples, "rq_queue_jobs", queue=QUEUE) == 3
    assert value(samples, "rq_registry_jobs", queue=QUEUE, registry="failed") == 1
    assert value(samples, "rq_registry_jobs", queue=QUEUE, registry="started") == 0
    assert value(samples, "rq_workers", queue=QUEUE) == 0
    assert value(samples, "rq_jobs_total", queue=QUEUE, outcome="finished") == 2
    assert value(samples, "rq_jobs_total", queue=QUEUE, outcome="failed") == 1
    finished = {"queue": QUEUE, "outcome": "finished"}
    assert value(samples, "rq_job_duration_seconds_bucket", le="0.5", **finished) == 1
    assert value(samples, "rq_job_duration_seconds_bucket", le="5.0", **finished) == 2
    assert value(samples, "rq_job_duration_seconds_sum", **finished) == pytest.approx(4.3)


def test_a_dead_workers_registration_does_not_count_as_a_live_worker(
    client: Client, metrics_on: None, rq_queue: Redis
) -> None:
    workers = f"rq:workers:{QUEUE}"
    rq_queue.sadd(workers, "rq:worker:alive", "rq:worker:gone")
    rq_queue.hset("rq:worker:alive", "birth", "now")  # a heartbeat keeps this key; the other expired
    try:
        assert value(scrape(client), "rq_workers", queue=QUEUE) == 1
    finally:
        rq_queue.delete(workers, "rq:worker:alive")


@pytest.mark.parametrize("fault", ["black hole", "refused"])
def test_a_redis_that_fails_costs_the_rq_metrics_only_and_never_the_deadline(
    client: Client, metrics_on: None, black_hole: BlackHole, fault: str
) -> None:
    port = black_hole.port if fault == "black hole" else free_port()
    queues_at = {QUEUE: {"URL": f"redis://127.0.0.1:{port}/0?socket_timeout=30&socket_connect_timeout=30"}}
    threads_before = threading.active_count()
    with override_settings(RQ_QUEUES=queues_at, HEALTHCHECK_TIMEOUT=0.5):
        client.get("/admin/login/")
        for _ in range(3):
            with timed() as elapsed:
                samples = scrape(client)
            assert elapsed[0] <= 0.5 + MARGIN  # measured here, in the process that enforces it
            assert value(samples, "rq_scrape_ok") == 0
            assert value(samples, "rq_scrape_error", error="timeout" if fault == "black hole" else "refused") == 1
            assert not any(name.startswith("rq_queue") for name, _ in samples)
            assert value(samples, "http_requests_total", route="/admin/login/", method="GET", status_class="2xx") >= 1
    # One reader thread, however many scrapes gave up on it.
    assert threading.active_count() <= threads_before + 1


def test_scrapes_at_once_share_one_read(metrics_on: None, black_hole: BlackHole) -> None:
    """Like the probes: a burst of scrapes costs one run, and everyone has an answer on time."""
    queues_at = {QUEUE: {"URL": f"redis://127.0.0.1:{black_hole.port}/0"}}
    answers: list[queues.Snapshot] = []
    with override_settings(RQ_QUEUES=queues_at):
        threads = [threading.Thread(target=lambda: answers.append(queues.snapshot(0.5))) for _ in range(8)]
        with timed() as elapsed:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert elapsed[0] <= 0.5 + MARGIN
    assert [answer.error for answer in answers] == ["timeout"] * 8
    assert len(black_hole.accepted) <= 1


# --- process basics ---------------------------------------------------------------------------------


def test_process_basics_of_this_process(client: Client, metrics_on: None) -> None:
    import os

    samples = scrape(client)
    mine = {"pid": str(os.getpid()), "role": "main"}
    assert value(samples, "process_resident_memory_bytes", **mine) > 0
    assert value(samples, "process_open_fds", **mine) > 0
    assert value(samples, "process_cpu_seconds_total", **mine) > 0


def test_invented_methods_share_one_label_and_one_cache_entry(client: Client, metrics_on: None) -> None:
    before = scrape(client)
    cached = len(instruments._requests)
    for method in ("BREW", "PROPFIND", "WHEN", "X" * 20):
        client.generic(method, "/")
    after = scrape(client)
    other = sum(
        count - before.get((name, labels), 0.0)
        for (name, labels), count in after.items()
        if name == "http_requests_total" and ("method", "other") in labels
    )
    assert other == 4
    assert len(instruments._requests) <= cached + 1  # one entry for "other", not one per method


def test_a_scrape_that_cannot_read_the_files_consistently_fails(
    client: Client, metrics_on: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold holding the replica's files past the scrape's wait: 503, never a count read twice."""
    monkeypatch.setenv(multiprocess_metrics.ENVIRONMENT_VARIABLE, str(tmp_path))
    monkeypatch.setattr(multiprocess_metrics, "READ_WAIT_SECONDS", 0.1)
    with open(tmp_path / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        response = client.get("/metrics", headers=AUTHORISED)
        assert response.status_code == 503
        assert response["Retry-After"] == "1"
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert client.get("/metrics", headers=AUTHORISED).status_code == 200
