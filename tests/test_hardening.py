"""Production hardening: the deploy check applies the environment's rules to the settings, and
routine internet noise is not logged as an error."""

from __future__ import annotations

import logging

import pytest
from django.core import checks
from django.test import Client, override_settings

from harness.project import project_env, run_manage


def _deploy_problems() -> dict[str, str]:
    found = checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
    return {message.id: message.msg for message in found if message.id and message.id.startswith("core.")}


def test_the_settings_pass_the_hardening_checks() -> None:
    assert _deploy_problems() == {}


@pytest.mark.parametrize(
    ("changes", "check_id", "rule"),
    [
        ({"ALLOWED_HOSTS": ["*"]}, "core.E001", "ALLOWED_HOSTS must name the hosts, not *"),
        ({"HEALTHCHECK_TOKEN": "too-short"}, "core.E002", "HEALTHCHECK_TOKEN must be at least 32 characters"),
        ({"METRICS_TOKEN": "x" * 20}, "core.E002", "METRICS_TOKEN must be at least 32 characters"),
        ({"RQ_API_TOKEN": "\u00e9" * 40}, "core.E002", "RQ_API_TOKEN must be at least 32 characters"),
        ({"ADMIN_URL": "ops/../admin/"}, "core.E003", "ADMIN_URL must not contain . or .. segments"),
        ({"ADMIN_URL": "readyz/"}, "core.E003", "ADMIN_URL must not start with a probe path"),
    ],
)
def test_settings_changed_in_code_fail_the_deploy_check(changes: dict[str, object], check_id: str, rule: str) -> None:
    with override_settings(**changes):
        problems = _deploy_problems()
    assert list(problems) == [check_id]
    assert problems[check_id].startswith(rule)
    for value in changes.values():
        if isinstance(value, str) and len(value) > 8:
            assert value not in problems[check_id]


def test_any_host_is_fine_in_development() -> None:
    with override_settings(DEBUG=True, ALLOWED_HOSTS=["*"]):
        assert _deploy_problems() == {}


def test_a_disallowed_host_is_a_warning_not_an_error(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    """Scanners send any Host header to any address: routine noise, not an alert."""
    with caplog.at_level(logging.INFO):
        response = client.get("/admin/login/", HTTP_HOST="scanner.invalid")
    assert response.status_code == 400
    (record,) = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.levelname == "WARNING"
    assert "scanner.invalid" in record.getMessage()


def test_other_security_events_stay_errors(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("django.security.SuspiciousOperation")
    with caplog.at_level(logging.INFO):
        logger.error("something else")
    assert [r.levelname for r in caplog.records if r.name == logger.name] == ["ERROR"]


@pytest.mark.slow
def test_check_deploy_reports_a_short_token_set_in_code(tmp_path) -> None:
    """The whole truth from the real command: settings changed in code, not through the environment."""
    (tmp_path / "weak_settings.py").write_text("from config.settings.base import *\nHEALTHCHECK_TOKEN = 'short'\n")
    environment = project_env(DJANGO_SETTINGS_MODULE="weak_settings")
    environment["PYTHONPATH"] = str(tmp_path)
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=environment)
    assert result.returncode == 1
    assert "core.E002" in result.stderr
    assert "HEALTHCHECK_TOKEN must be at least 32 characters" in result.stderr
