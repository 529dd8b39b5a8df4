"""Structured logs from real processes (gunicorn, rqworker, manage.py), parsed line by line."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from harness.processes import parse_json_lines, wait_until
from harness.project import PYTHON, ROOT, Server, project_env, run_manage

SECRET_KEY = "logging-test-secret-key-Zq8wX3vB7nM2kL5pR9tY4uI6oA1sD0fG-very-long"
TOKEN = "logging-test-token-Hj7Kd93Lm-Qp4Zx8Wv"
DB_PASSWORD = "db-password-Xy7Qw2"
REDIS_PASSWORD_FREE_URL = project_env()["REDIS_URL"]
SECRETS = (SECRET_KEY, TOKEN, DB_PASSWORD)

pytestmark = pytest.mark.slow  # every test here starts real processes


def _env(**overrides: str) -> dict[str, str]:
    database = project_env()["DATABASE_URL"].replace("postgres@", f"postgres:{DB_PASSWORD}@")  # trust auth: ignored
    values = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "HEALTHCHECK_TOKEN": TOKEN,
        "DATABASE_URL": database,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "WEB_CONCURRENCY": "1",
        **overrides,
    }
    return {**project_env(), **values}


def _assert_no_secrets(output: str) -> None:
    """Every output a test captures is checked where it is captured (no test relies on another)."""
    for secret in SECRETS:
        assert secret not in output


def _json_lines(output: str) -> list[dict[str, Any]]:
    """Every line must be one JSON object: anything else is a formatting leak."""
    _assert_no_secrets(output)
    records = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict)
        records.append(record)
    return records


def _assert_base_fields(record: dict[str, Any]) -> None:
    for key in ("timestamp", "level", "event", "logger"):
        assert key in record, f"{key} missing from {record}"
    timestamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    offset = timestamp.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    assert record["level"] in ("debug", "info", "warning", "error", "critical")


@pytest.fixture(scope="module")
def gunicorn_run() -> dict[str, Any]:
    """One gunicorn session with the traffic every test below inspects."""
    server = Server(_env()).start()
    try:
        responses = {
            "valid": server.get("/admin/login/", {"X-Request-ID": "trace-abc.123_X"}),
            "invalid": server.get("/admin/login/", {"X-Request-ID": 'bad"id\\ninjected'}),
            "long": server.get("/admin/login/", {"X-Request-ID": "L" * 1_000}),
            # Beyond gunicorn's header size limit: refused before Django sees it.
            "huge": server.get("/admin/login/", {"X-Request-ID": "A" * 10_000}),
            "missing": server.get("/admin/login/"),
            "probe": server.get("/healthz?verbose=1", {"Authorization": f"Bearer {TOKEN}"}),
            "wrong_token": server.get("/healthz?verbose=1", {"Authorization": "Bearer nope"}),
            "fail": server.get("/__test__/fail", {"X-Request-ID": "failing-request"}),
            "not_found": server.get("/no-such-page", {"X-Request-ID": "missing-page"}),
        }
    finally:
        server.stop()
    return {"responses": responses, "records": _json_lines(server.output())}


def _by_request(records: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("request_id") == request_id]


class TestGunicornJson:
    def test_every_line_is_json_with_the_base_fields(self, gunicorn_run: dict[str, Any]) -> None:
        records = gunicorn_run["records"]
        assert records
        for record in records:
            _assert_base_fields(record)
        loggers = {record["logger"] for record in records}
        assert {"gunicorn.error", "gunicorn.access", "django_structlog.middlewares.request"} <= loggers

    def test_a_valid_request_id_follows_the_request(self, gunicorn_run: dict[str, Any]) -> None:
        response = gunicorn_run["responses"]["valid"]
        assert response.headers["x-request-id"] == "trace-abc.123_X"
        lines = _by_request(gunicorn_run["records"], "trace-abc.123_X")
        events = sorted(record["event"] for record in lines)
        # One of each, no duplicates: django-structlog's pair and gunicorn's access line.
        assert events == ["http_request", "request_finished", "request_started"]
        finished = next(r for r in lines if r["event"] == "request_finished")
        assert finished["method"] == "GET"
        assert finished["path"] == "/admin/login/"
        assert finished["status_code"] == 200
        assert finished["duration_ms"] >= 0
        access = next(r for r in lines if r["event"] == "http_request")
        assert access["logger"] == "gunicorn.access"
        assert (access["method"], access["path"], access["status"]) == ("GET", "/admin/login/", 200)

    @pytest.mark.parametrize("case", ["invalid", "long", "missing"])
    def test_bad_or_missing_ids_are_replaced(self, gunicorn_run: dict[str, Any], case: str) -> None:
        request_id = gunicorn_run["responses"][case].headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        events = sorted(r["event"] for r in _by_request(gunicorn_run["records"], request_id))
        assert events == ["http_request", "request_finished", "request_started"]

    def test_rejected_ids_never_reach_the_log(self, gunicorn_run: dict[str, Any]) -> None:
        output = "\n".join(json.dumps(record) for record in gunicorn_run["records"])
        assert "injected" not in output
        assert "L" * 129 not in output
        assert "A" * 129 not in output
        assert gunicorn_run["responses"]["huge"].status == 431  # Request Header Fields Too Large

    def test_probes_are_not_logged_at_info(self, gunicorn_run: dict[str, Any]) -> None:
        probe_id = gunicorn_run["responses"]["probe"].headers["x-request-id"]
        assert _by_request(gunicorn_run["records"], probe_id) == []
        assert not any(r.get("path", "").startswith("/healthz") for r in gunicorn_run["records"])

    def test_exception_traceback_stays_inside_one_json_line(self, gunicorn_run: dict[str, Any]) -> None:
        assert gunicorn_run["responses"]["fail"].status == 500
        lines = _by_request(gunicorn_run["records"], "failing-request")
        failed = [r for r in lines if r["event"] == "request_failed"]
        assert len(failed) == 1
        (exception,) = failed[0]["exception"]  # nothing chained to it (no stray context)
        assert exception["exc_type"] == "RuntimeError"
        assert exception["exc_value"] == "deliberate failure for the logging tests"
        assert any(frame["name"] == "fail" for frame in exception["frames"])
        assert all("locals" not in frame for frame in exception["frames"])
        assert any(r["event"] == "about_to_fail" for r in lines)  # the view's own line has the id too

    def test_lines_logged_after_the_middleware_keep_the_request_id(self, gunicorn_run: dict[str, Any]) -> None:
        assert gunicorn_run["responses"]["not_found"].status == 404
        lines = _by_request(gunicorn_run["records"], "missing-page")
        assert any(r["logger"] == "django.request" and r["event"].startswith("Not Found") for r in lines)

    def test_startup_line_masks_passwords(self, gunicorn_run: dict[str, Any]) -> None:
        (ready,) = [r for r in gunicorn_run["records"] if r["event"] == "web_ready"]
        assert ":***@" in ready["database"]
        assert DB_PASSWORD not in json.dumps(ready)


def test_runserver_request_lines_carry_the_request_id() -> None:
    """`make run` serves with runserver: its own request lines must match gunicorn's access lines."""
    with Server(_env(), kind="runserver") as server:
        assert server.get("/no-such-page", {"X-Request-ID": "runserver-line-1"}).status == 404
        assert server.get("/no-such-page", {"X-Request-ID": "runserver-line-2"}).status == 404

        def request_lines() -> list[dict[str, Any]]:
            # runserver also prints its banner as plain text on stdout: only the log lines are JSON.
            return [r for r in parse_json_lines(server.output()) if r.get("logger") == "django.server"]

        lines = wait_until(lambda: len(request_lines()) >= 2 and request_lines(), 10, "runserver's request lines")
    _assert_no_secrets(server.output())
    assert [line["request_id"] for line in lines] == ["runserver-line-1", "runserver-line-2"]
    assert all(line["status_code"] == 404 for line in lines)


def test_job_lines_carry_the_request_id_and_job_id() -> None:
    env = _env()
    with Server(env) as server:
        response = server.get("/__test__/enqueue?value=ping", {"X-Request-ID": "job-origin-77"})
        assert response.status == 200
        job_id = json.loads(response.body)["job_id"]
    _json_lines(server.output())
    worker = run_manage("rqworker", "default", "--burst", env=env, timeout=120)
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.strip() == ""  # everything goes to the log stream
    records = _json_lines(worker.stderr)
    for record in records:
        _assert_base_fields(record)
    (ran,) = [r for r in records if r["event"] == "sample_job_ran" and r.get("job_id") == job_id]
    assert ran["request_id"] == "job-origin-77"
    assert ran["queue"] == "default"
    assert ran["job_func"] == "tests.jobs.log_and_return"
    assert ran["worker_id"]
    # rq's own lines about this job carry the same context...
    assert any(r["logger"] == "rq.worker" and r.get("job_id") == job_id for r in records)
    # ...and the context is gone once the job is done.
    (quitting,) = [r for r in records if r["event"].endswith("done, quitting")]
    assert "job_id" not in quitting
    assert "request_id" not in quitting
    assert quitting["worker_id"] == ran["worker_id"]


def _enqueue_from_a_shell_and_run(env: dict[str, str], job: str, argument: str) -> tuple[str, list[dict[str, Any]]]:
    """Enqueue ``tests.jobs.<job>(argument)`` outside any request, run a burst worker: the job id and its log."""
    enqueue = (
        f"import django_rq; from tests.jobs import {job}; "
        f"print(django_rq.get_queue('default').enqueue({job}, {argument!r}).id)"
    )
    created = run_manage("shell", "-c", enqueue, env=env)
    assert created.returncode == 0, created.stderr
    worker = run_manage("rqworker", "default", "--burst", env=env, timeout=120)
    assert worker.returncode == 0, worker.stderr
    return created.stdout.strip().splitlines()[-1], _json_lines(worker.stderr)


def test_jobs_enqueued_outside_a_request_get_their_own_context() -> None:
    job_id, records = _enqueue_from_a_shell_and_run(_env(), "log_and_return", "cli")
    (ran,) = [r for r in records if r["event"] == "sample_job_ran" and r.get("job_id") == job_id]
    assert ran["request_id"] is None


def test_a_failed_jobs_traceback_is_a_structured_exception() -> None:
    """Like a Django 500 under LOG_FORMAT=json: one line, the exception as data, not as text."""
    job_id, records = _enqueue_from_a_shell_and_run(_env(), "fail", "deliberate job failure")
    (failed,) = [r for r in records if r["event"] == "job_failed" and r.get("job_id") == job_id]
    assert failed["level"] == "error"
    assert failed["job_func"] == "tests.jobs.fail"
    (exception,) = failed["exception"]
    assert (exception["exc_type"], exception["exc_value"]) == ("RuntimeError", "deliberate job failure")
    assert any(frame["name"] == "fail" for frame in exception["frames"])
    assert not any("Traceback (most recent call last)" in r["event"] for r in records)


def test_console_format_is_for_people() -> None:
    result = run_manage("check_services", env=_env(LOG_FORMAT="console", REDIS_URL="redis://127.0.0.1:1/0"))
    _assert_no_secrets(result.stdout + result.stderr)
    assert result.returncode == 1
    warning = next(line for line in result.stderr.splitlines() if "health_check_failed" in line)
    assert warning.lstrip().startswith("20")  # an ISO timestamp first
    assert "[warning" in warning
    assert "check=redis" in warning
    for line in result.stderr.splitlines():
        assert not line.lstrip().startswith("{")


def test_settings_errors_do_not_echo_values() -> None:
    result = run_manage("check", env=_env(DJANGO_SECRET_KEY="short-" + TOKEN, PORT=DB_PASSWORD))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "DJANGO_SECRET_KEY: must be at least 50 characters when DJANGO_DEBUG is false",
        "PORT: must be an integer 1-65535",
    ]
    _assert_no_secrets(result.stdout + result.stderr)


def test_worker_process_started_directly_logs_json(tmp_path: Path) -> None:
    """The long-running worker (not --burst): its start-up lines are JSON with worker_id."""
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [PYTHON, "manage.py", "rqworker", "default", "--worker-ttl", "30"],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        # Up and waiting for work: rq says so once it listens on its queues.
        wait_until(lambda: "Listening on" in log.read_text(), 60, "the worker to listen on its queue")
    finally:
        process.terminate()
        process.wait(30)
    records = _json_lines(log.read_text())
    assert process.returncode == 0
    (ready,) = [r for r in records if r["event"] == "worker_ready"]
    assert ready["worker_id"]
    assert all(r.get("worker_id") == ready["worker_id"] for r in records if r["logger"] == "rq.worker")


def test_python_warnings_are_log_lines_too() -> None:
    result = run_manage("shell", "-c", "import warnings; warnings.warn('careful now')", env=_env())
    assert result.returncode == 0, result.stderr
    (warning,) = [r for r in _json_lines(result.stderr) if r["logger"] == "py.warnings"]
    assert "careful now" in warning["event"]
    assert warning["level"] == "warning"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgres://app:pw-1@db:5432/app", "postgres://app:***@db:5432/app"),
        ("redis://:pw-2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("unix:///run/redis.sock?password=pw-3&db=1", "unix:///run/redis.sock?password=***&db=1"),
        ("rediss://cache:6380/0?ssl_password=pw-4&x=%2Fa%20b", "rediss://cache:6380/0?ssl_password=***&x=%2Fa%20b"),
        ("postgres://db/app?sslpassword=pw-5&sslmode=require", "postgres://db/app?sslpassword=***&sslmode=require"),
        ("rediss://cache:6380/0", "rediss://cache:6380/0"),
    ],
)
def test_urls_are_logged_without_passwords(url: str, masked: str) -> None:
    from apps.common.masking import mask_url

    assert mask_url(url) == masked
