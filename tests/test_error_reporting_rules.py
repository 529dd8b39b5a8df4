"""What ``before_send`` does to an event, in process (sentry-sdk itself is not started here).

The events are shaped as sentry-sdk hands them to ``before_send`` (serialised: dicts, lists and
strings, local variables as their ``repr``). The whole path, from a real exception in gunicorn and
in an rq worker to the envelopes a sink receives, is in ``tests/test_error_reporting.py``.
"""

from __future__ import annotations

import json

import structlog

from config import env
from config.error_reporting import before_send, secret_values

SECRET_KEY = "rules-test-secret-key-Zq8wX3vB7nM2kL5pR9tY4uI6oA1sD0fG-long"
METRICS_TOKEN = "rules-test-metrics-token-0123456789abcdef"
DB_PASSWORD = "db-pass-Hy7Qw2"
REDIS_PASSWORD = "redis-pass-Kd93Lm"
CONFIG = env.load(
    {
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "DATABASE_URL": f"postgres://app:{DB_PASSWORD}@db.internal:5432/app",
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0",
        "METRICS_TOKEN": METRICS_TOKEN,
        "SENTRY_DSN": "https://publickey@sentry.example.com/42",
    }
)
SECRETS = (SECRET_KEY, METRICS_TOKEN, DB_PASSWORD, REDIS_PASSWORD)


def test_the_secrets_to_mask_are_every_secret_variables_secret_part() -> None:
    assert set(secret_values(CONFIG)) >= set(SECRETS)
    assert "app" not in secret_values(CONFIG)  # user names and hosts are not secrets


def event_with_secrets(url: str = "http://10.0.0.5:8000/orders/17") -> dict[str, object]:
    return {
        "request": {"url": url, "method": "GET"},
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"cannot reach redis://:{REDIS_PASSWORD}@cache.internal:6379/0 with {METRICS_TOKEN}",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "view",
                                "vars": {
                                    "key": repr(SECRET_KEY),
                                    "database": {"NAME": "'app'", "PASSWORD": repr(DB_PASSWORD)},
                                    "dsn": f"'postgres://app:{DB_PASSWORD}@db.internal:5432/app'",
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }


def test_every_secret_is_masked_wherever_it_is(monkeypatch) -> None:
    monkeypatch.setattr("config.error_reporting._secrets", secret_values(CONFIG))
    cleaned = before_send(event_with_secrets(), {})
    assert cleaned is not None
    text = json.dumps(cleaned)
    for secret in SECRETS:
        assert secret not in text
    assert "cache.internal" in text  # where it failed stays readable
    assert "redis://:***@cache.internal:6379/0" in text


def test_events_about_the_probes_are_dropped(monkeypatch) -> None:
    for path in ("/livez", "/readyz", "/healthz", "/healthz/"):
        assert before_send(event_with_secrets(f"http://10.0.0.5:8000{path}"), {}) is None
    assert before_send({"logger": "apps.health.checks", "message": "x"}, {}) is None
    with structlog.contextvars.bound_contextvars(job_func="apps.health.jobs.canary"):
        assert before_send({"message": "canary failed"}, {}) is None
    assert before_send(event_with_secrets("http://10.0.0.5:8000/healthz-report"), {}) is not None


def test_events_are_tagged_from_the_log_context() -> None:
    with structlog.contextvars.bound_contextvars(
        request_id="req-7", job_id="job-9", queue="default", worker_id="w-1", ip="10.0.0.9"
    ):
        cleaned = before_send({"message": "boom"}, {})
    assert cleaned is not None
    assert cleaned["tags"] == {"request_id": "req-7", "job_id": "job-9", "queue": "default", "worker_id": "w-1"}
    # A tag set where the event was captured (the job's handler) wins over the context.
    with structlog.contextvars.bound_contextvars(request_id="req-7"):
        tagged = before_send({"tags": {"request_id": "from-the-job"}}, {})
    assert tagged is not None
    assert tagged["tags"]["request_id"] == "from-the-job"


def test_a_jobs_description_keeps_its_function_not_its_arguments() -> None:
    job = {"func": "apps.orders.jobs.send_invoice", "description": "apps.orders.jobs.send_invoice('ann@example.com')"}
    cleaned = before_send({"extra": {"rq-job": dict(job)}}, {})
    assert cleaned is not None
    assert cleaned["extra"]["rq-job"]["description"] == "apps.orders.jobs.send_invoice"
