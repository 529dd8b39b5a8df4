"""The probe paths match whole paths only, and the probes answer JSON whatever the query string."""

from __future__ import annotations

import logging
import re

import pytest
from django.test import Client

from apps.common.probe_paths import PROBE_PATHS, path_pattern
from config.logging import HealthProbeAccessFilter
from harness.project import Server, project_env

pytestmark = pytest.mark.django_db

TOKEN = "strict-probe-token-0123456789-abcdef"
# Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) parameters in request.GET.
MANY_PARAMETERS = "&".join(f"p{number}=1" for number in range(1_500))


@pytest.mark.parametrize("path", PROBE_PATHS)
def test_a_pattern_matches_the_whole_path_only(path: str) -> None:
    pattern = re.compile(path_pattern(path))
    assert pattern.search(path)
    assert pattern.search(path + "/")
    assert not pattern.search(path + "\n")
    assert not pattern.search(path + "/\n")


def test_a_probe_path_with_a_newline_is_not_exempt_from_the_https_redirect(client: Client, settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    response = client.get("/healthz%0A")  # PATH_INFO "/healthz\\n"
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def _access_record(path: str) -> logging.LogRecord:
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(U)s", None, None)
    record.args = {"U": path, "s": "404"}
    return record


@pytest.mark.parametrize("path", ["/healthz\n", "/healthz/\n", "/livez\nforged=line", "/readyzz", "/x/healthz"])
def test_only_real_probe_lines_are_demoted(path: str) -> None:
    record = _access_record(path)
    assert HealthProbeAccessFilter().filter(record) is True
    assert record.levelname == "INFO"


def test_real_probe_lines_are_demoted() -> None:
    for path in ("/healthz", "/readyz/", "/livez?verbose=1"):
        record = _access_record(path)
        HealthProbeAccessFilter().filter(record)
        assert record.levelname == "DEBUG"


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz"])
def test_a_probe_with_too_many_parameters_still_answers_json(
    client: Client, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = client.get(f"{path}?{MANY_PARAMETERS}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json()["status"] == "ok"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_details_still_follow_the_last_verbose_parameter(client: Client, settings) -> None:
    settings.HEALTHCHECK_TOKEN = TOKEN
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert "checks" in client.get(f"/healthz?{MANY_PARAMETERS}&verbose=1", headers=bearer).json()
    assert "checks" in client.get("/healthz?verbose=0&verbose=1", headers=bearer).json()
    assert "checks" not in client.get("/healthz?verbose=1&verbose=0", headers=bearer).json()
    assert "checks" not in client.get("/healthz?verbose=true", headers=bearer).json()


@pytest.mark.slow
def test_gunicorn_logs_a_probe_path_with_a_newline_at_info() -> None:
    """The access line of `/healthz%0A` is not hidden with the probes' own lines."""
    with Server(project_env(WEB_CONCURRENCY="1", LOG_LEVEL="INFO")) as server:
        assert server.get("/healthz%0A").status == 404
        assert server.get("/healthz").status == 200
        server.stop()
        paths = [event.get("path") for event in server.events() if event.get("event") == "http_request"]
    assert paths == ["/healthz\n"]
