"""Error reporting end to end: real gunicorn and a real rq worker report to a local envelope sink.

The sink (``harness.sinks.EnvelopeSink``) is the DSN's host: sentry-sdk sends it exactly what it
would send to Sentry. Every secret the configuration holds is set to a recognisable value (the
database password through PostgreSQL's trust authentication, the Redis password on a throwaway
``redis-server --requirepass``), and the bytes that reached the sink are searched for each.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from harness.processes import wait_until
from harness.project import Server, project_env, run_manage
from harness.servers import RedisServer
from harness.sinks import EnvelopeSink

pytestmark = pytest.mark.slow

SECRET_KEY = "reporting-test-secret-key-Zq8wX3vB7nM2kL5pR9tY4uI6oA1sD0fG-long"
HEALTHCHECK_TOKEN = "reporting-health-token-Hj7Kd93Lm-Qp4Zx8Wv"
METRICS_TOKEN = "reporting-metrics-token-Rt5Yu8Io-Pa2Sd4Fg"
DB_PASSWORD = "db-password-Xy7Qw2Lp"
REDIS_PASSWORD = "redis-password-Mn4Bv6Cx"
SECRETS = (SECRET_KEY, HEALTHCHECK_TOKEN, METRICS_TOKEN, DB_PASSWORD, REDIS_PASSWORD)
ENVIRONMENT, RELEASE = "staging-test", "2026.12.1-test"


def events_of(sink: EnvelopeSink, request_id: str) -> list[dict[str, Any]]:
    return [event for event in sink.events() if event.get("tags", {}).get("request_id") == request_id]


@pytest.fixture(scope="module")
def reported() -> Iterator[dict[str, Any]]:
    """One server and one worker reporting to one sink; every test below reads what arrived."""
    with EnvelopeSink() as sink:
        redis = RedisServer().start("--requirepass", REDIS_PASSWORD)
        database = project_env()["DATABASE_URL"].replace("postgres@", f"postgres:{DB_PASSWORD}@")  # trust: ignored
        env = {
            **project_env(),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "HEALTHCHECK_TOKEN": HEALTHCHECK_TOKEN,
            "METRICS_TOKEN": METRICS_TOKEN,
            "DATABASE_URL": database,
            "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0",
            "SENTRY_DSN": sink.dsn,
            "SENTRY_ENVIRONMENT": ENVIRONMENT,
            "SENTRY_RELEASE": RELEASE,
            # One worker, so one sentry-sdk transport: events leave in the order they happened.
            "WEB_CONCURRENCY": "1",
        }
        server = Server(env).start()
        try:
            statuses = {
                "web": server.get("/__test__/fail", {"X-Request-ID": "report-web"}).status,
                "secrets": server.get("/__test__/fail-holding-secrets", {"X-Request-ID": "report-secrets"}).status,
            }
            enqueued = server.get("/__test__/enqueue-failing", {"X-Request-ID": "report-job"})
            worker = run_manage("rqworker", "default", "--burst", env=env, timeout=90)
            assert worker.returncode == 0, worker.stderr[-2000:]
            wait_until(lambda: events_of(sink, "report-job"), 30, "the failed job's event")

            redis.stop()  # readiness fails now: logged, never reported
            statuses["probe"] = server.get("/readyz", {"X-Request-ID": "report-probe"}).status
            # A marker after it, from the same transport: once it is here, any probe event would be too.
            server.get("/__test__/fail", {"X-Request-ID": "report-marker"})
            wait_until(lambda: events_of(sink, "report-marker"), 30, "the marker event")
            wait_until(lambda: events_of(sink, "report-web") and events_of(sink, "report-secrets"), 30, "the events")
        finally:
            server.stop()
            redis.stop()
        yield {"sink": sink, "statuses": statuses, "job_id": enqueued.json()["job_id"], "log": server.output()}  # type: ignore[index]


def test_an_unhandled_exception_in_a_view_is_reported_with_its_request_id(reported: dict[str, Any]) -> None:
    assert reported["statuses"]["web"] == 500
    (event,) = events_of(reported["sink"], "report-web")
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["environment"] == ENVIRONMENT
    assert event["release"] == RELEASE
    assert urlsplit(event["request"]["url"]).path == "/__test__/fail"


def test_a_failed_job_is_reported_with_its_job_id_and_the_enqueuing_requests_id(reported: dict[str, Any]) -> None:
    (event,) = events_of(reported["sink"], "report-job")
    assert event["tags"]["job_id"] == reported["job_id"]
    assert event["tags"]["queue"] == "default"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert (event["environment"], event["release"]) == (ENVIRONMENT, RELEASE)
    # The job's arguments stay out, as any personal data would (send_default_pii is off).
    assert "deliberate failure for the error-reporting tests" not in str(event.get("extra", {}))


def test_no_secret_reaches_the_sink(reported: dict[str, Any]) -> None:
    sink: EnvelopeSink = reported["sink"]
    (event,) = events_of(sink, "report-secrets")
    message = event["exception"]["values"][-1]["value"]
    assert "redis://:***@127.0.0.1:" in message  # where it failed stays readable
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any("secret_key" in frame.get("vars", {}) for frame in frames)  # local variables are sent, masked
    raw = sink.raw()
    assert raw
    for secret in SECRETS:
        assert secret.encode() not in raw
    # No personal data: no cookies, no client address, no Authorization header.
    for event in sink.events():
        assert "cookies" not in event.get("request", {})
        assert "ip_address" not in event.get("user", {})


def test_a_failing_probe_creates_no_event(reported: dict[str, Any]) -> None:
    assert reported["statuses"]["probe"] == 503
    assert "health_check_failed" in reported["log"]  # the probe's failure is logged
    events = reported["sink"].events()
    assert events_of(reported["sink"], "report-probe") == []
    assert not [event for event in events if urlsplit(event.get("request", {}).get("url", "")).path == "/readyz"]


@pytest.mark.parametrize(("dsn", "loaded"), [(None, "False"), ("http://publickey@127.0.0.1:9/1", "True")])
def test_sentry_sdk_is_imported_only_with_a_dsn(dsn: str | None, loaded: str) -> None:
    result = run_manage(
        "shell", "-c", "import sys; print('sentry_sdk' in sys.modules)", env=project_env(SENTRY_DSN=dsn), timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == loaded  # after Django 5.2's "objects imported" line
