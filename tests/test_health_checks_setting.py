"""``HEALTH_CHECKS``: checks added, made non-critical or misconfigured by settings alone (in-process, real services)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings

from apps.common import errors
from apps.health import checklist
from apps.health.checks import run_checks
from harness.processes import free_port, timed
from tests.probes import GATES
from tests.support import caches_at

pytestmark = pytest.mark.django_db

TOKEN = "setting-test-token-0123456789"
DB = {"probe": "apps.health.probes.DatabaseProbe", "options": {"alias": "default"}, "critical": True}
REDIS = {"probe": "apps.health.probes.RedisProbe", "options": {"alias": "default"}, "critical": True}


def test_the_default_is_exactly_the_contract(settings) -> None:
    assert settings.HEALTH_CHECKS == {"db": DB, "redis": REDIS}
    assert list(run_checks().checks) == ["db", "redis"]


def _with_spare_cache(critical: bool | None) -> dict[str, Any]:
    """``HEALTH_CHECKS`` plus a Redis check of a second cache alias (nothing listens there)."""
    spare: dict[str, Any] = {"probe": "apps.health.probes.RedisProbe", "options": {"alias": "spare"}}
    if critical is not None:
        spare["critical"] = critical
    return {"db": DB, "redis": REDIS, "spare_cache": spare}


@pytest.fixture
def spare_cache_down(settings) -> Iterator[None]:
    caches = caches_at(settings.CACHES["default"]["LOCATION"])
    caches["spare"] = caches_at(f"redis://127.0.0.1:{free_port()}/0")["default"]
    with override_settings(CACHES=caches, HEALTH_CHECKS=_with_spare_cache(critical=False), HEALTHCHECK_TOKEN=TOKEN):
        yield


@pytest.mark.usefixtures("spare_cache_down")
class TestANonCriticalCheckThatFails:
    def test_plain_body_shows_it_but_stays_ready(self, client: Client) -> None:
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "db": "ok", "redis": "ok", "spare_cache": "error"}

    def test_health_json_says_warn_and_details_only_for_the_token(self, client: Client) -> None:
        anonymous = client.get("/healthz", HTTP_ACCEPT="application/health+json")
        assert anonymous.status_code == 200
        assert anonymous.json() == {
            "status": "warn",
            "checks": {
                "db:responseTime": [{"status": "pass"}],
                "redis:responseTime": [{"status": "pass"}],
                "spare_cache:responseTime": [{"status": "warn"}],
            },
        }
        authorised = client.get("/healthz", HTTP_ACCEPT="application/health+json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        (entry,) = authorised.json()["checks"]["spare_cache:responseTime"]
        assert (entry["status"], entry["output"], entry["observedUnit"]) == ("warn", errors.REFUSED, "ms")

    def test_verbose_names_its_criticality(self, client: Client) -> None:
        body = client.get("/healthz?verbose=1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
        assert body["checks"]["spare_cache"] == {
            "status": "error",
            "latency_ms": body["checks"]["spare_cache"]["latency_ms"],
            "error": errors.REFUSED,
            "critical": False,
        }
        assert body["checks"]["db"]["critical"] is True

    def test_check_services_exits_0_with_a_warning(self) -> None:
        out = StringIO()
        call_command("check_services", stdout=out)
        lines = out.getvalue().splitlines()
        assert lines[3].split()[:2] == ["spare_cache", "error"]
        assert lines[-1] == "healthy (warnings: spare_cache)"
        out = StringIO()
        call_command("check_services", "--json", stdout=out)
        report = json.loads(out.getvalue())
        assert (report["status"], report["spare_cache"], report["checks"]["spare_cache"]["critical"]) == (
            "ok",
            "error",
            False,
        )

    def test_only_chooses_among_the_configured_names(self) -> None:
        out = StringIO()
        call_command("check_services", "--json", "--only", "spare_cache", stdout=out)
        assert json.loads(out.getvalue()).keys() == {"status", "spare_cache", "checks"}
        with pytest.raises(CommandError) as caught:
            call_command("check_services", "--only", "db,kafka", stdout=StringIO())
        assert caught.value.returncode == 2
        assert str(caught.value) == "unknown check(s): kafka; choose from db, redis, spare_cache, worker"


def test_the_same_check_made_critical_fails_readiness(client: Client, settings) -> None:
    caches = caches_at(settings.CACHES["default"]["LOCATION"])
    caches["spare"] = caches_at(f"redis://127.0.0.1:{free_port()}/0")["default"]
    with override_settings(CACHES=caches, HEALTH_CHECKS=_with_spare_cache(critical=None)):  # critical by default
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "error", "db": "ok", "redis": "ok", "spare_cache": "error"}
        with pytest.raises(CommandError) as caught:
            call_command("check_services", stdout=StringIO())
        assert caught.value.returncode == 1
        assert str(caught.value) == "unhealthy: spare_cache"


@pytest.fixture
def gate() -> Iterator[str]:
    """A check (``tests.probes.GateProbe``) that hangs until the test opens its gate."""
    name = f"gate-{threading.get_ident()}-{len(GATES)}"
    checks = {"db": DB, "redis": REDIS, "gate": {"probe": "tests.probes.GateProbe", "options": {"gate": name}}}
    with override_settings(HEALTH_CHECKS=checks):
        yield name
    GATES[name].set()  # never leave its thread stuck


def test_an_added_check_runs_beside_the_others_within_the_same_deadline(gate: str) -> None:
    with timed() as elapsed:
        report = run_checks(timeout=0.5)
    assert elapsed[0] <= 0.5 + 0.25
    assert (report.checks["db"].ok, report.checks["redis"].ok) == (True, True)
    assert (report.checks["gate"].ok, report.checks["gate"].error) == (False, errors.TIMEOUT)


def test_a_caller_that_joined_a_run_before_it_turned_late_never_sees_a_late_ok(gate: str) -> None:
    """Callers A (a 1 s deadline) and B (10 s) share one run; A gives up on it, then it answers: B
    must report ``timeout``, as does everyone arriving after A's deadline (told at once)."""
    seen_by_a: list[Any] = []

    def impatient() -> None:
        seen_by_a.append(run_checks(["gate"], timeout=1.0))
        with timed() as elapsed:
            seen_by_a.append(run_checks(["gate"], timeout=10))  # arrives while the run is late
        seen_by_a.append(elapsed[0])
        GATES[gate].set()  # the run answers only now

    a = threading.Thread(target=impatient)
    a.start()
    b = run_checks(["gate"], timeout=10)  # joins the same run, well before A's deadline
    a.join(10)
    gave_up, arrived_late, waited = seen_by_a
    assert gave_up.checks["gate"].detail == "no answer before the deadline"
    assert arrived_late.checks["gate"].detail == "still running past an earlier deadline"
    assert waited < 1
    result = b.checks["gate"]
    assert (result.ok, result.error, result.detail) == (False, errors.TIMEOUT, "answered after the deadline")
    assert run_checks(["gate"], timeout=5).checks["gate"].ok  # the next run is a fresh one


BAD_ENTRIES = [
    ({"db": {**DB, "probe": "apps.health.probes.NoSuchProbe"}}, "HEALTH_CHECKS['db']['probe']: cannot import"),
    ({"db": {**DB, "probe": "apps.health.checks.run_checks"}}, "is not a class with run() and interrupt()"),
    ({"db": {**DB, "options": {"alias": "nope"}}}, "HEALTH_CHECKS['db']['options']: 'nope' is not a DATABASES alias"),
    ({"db": {**DB, "options": {"database": "default"}}}, "HEALTH_CHECKS['db']['options']: "),
    ({"db": {**DB, "critical": "yes"}}, "HEALTH_CHECKS['db']['critical']: must be True or False"),
    ({"db": {**DB, "timeout": 3}}, "HEALTH_CHECKS['db']: unknown key 'timeout'"),
    ({"status": DB}, "HEALTH_CHECKS['status']: a name is"),
    ({"db": "apps.health.probes.DatabaseProbe"}, "HEALTH_CHECKS['db']: must be a dict"),
    ({}, "HEALTH_CHECKS: must be a non-empty dict"),
]


@pytest.mark.parametrize(("setting", "problem"), BAD_ENTRIES)
def test_a_bad_setting_is_named_by_manage_py_check_and_by_the_first_probe(setting: Any, problem: str) -> None:
    with override_settings(HEALTH_CHECKS=setting):
        with pytest.raises(SystemCheckError) as caught:
            call_command("check", stdout=StringIO(), stderr=StringIO())
        assert "(health.E001)" in str(caught.value)
        assert problem in str(caught.value)
        with pytest.raises(ImproperlyConfigured, match="HEALTH_CHECKS"):
            run_checks()
        with pytest.raises(CommandError) as command:
            call_command("check_services", stdout=StringIO())
        assert command.value.returncode == 2
        assert problem in str(command.value)


def test_every_problem_is_reported_at_once() -> None:
    setting = {"db": {**DB, "critical": 1}, "redis": {**REDIS, "options": {"alias": "nope"}}}
    _, problems = checklist.read(setting)
    assert len(problems) == 2


def test_manage_py_check_passes_with_the_default() -> None:
    call_command("check", stdout=StringIO(), stderr=StringIO())
