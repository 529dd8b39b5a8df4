"""``manage.py check_services``: the table, --json, --only, --wait, --timeout and exit codes."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from harness.processes import free_port, timed
from harness.project import project_env, run_manage
from harness.servers import BlackHole, RedisServer
from tests.support import caches_at

pytestmark = pytest.mark.django_db


class TestInProcess:
    def test_healthy_table(self) -> None:
        out = StringIO()
        call_command("check_services", stdout=out)
        lines = out.getvalue().splitlines()
        assert lines[0].split() == ["service", "status", "latency", "detail"]
        assert lines[1].split()[:2] == ["db", "ok"]
        assert lines[2].split()[:2] == ["redis", "ok"]
        assert lines[1].split()[3] == "ms"
        assert lines[-1] == "healthy"

    def test_json_matches_the_http_body(self, client: Client) -> None:
        out = StringIO()
        call_command("check_services", "--json", stdout=out)
        report = json.loads(out.getvalue())
        http_body = client.get("/healthz").json()
        assert {key: report[key] for key in http_body} == http_body == {"status": "ok", "db": "ok", "redis": "ok"}
        for name in ("db", "redis"):
            assert report["checks"][name]["status"] == "ok"
            assert report["checks"][name]["error"] is None
            assert report["checks"][name]["latency_ms"] >= 0

    def test_redis_down_exits_1_and_names_it(self) -> None:
        out = StringIO()
        with (
            override_settings(CACHES=caches_at(f"redis://127.0.0.1:{free_port()}/0")),
            pytest.raises(CommandError) as caught,
        ):
            call_command("check_services", "--json", stdout=out)
        assert caught.value.returncode == 1
        report = json.loads(out.getvalue())
        assert report["status"] == "error"
        assert report["db"] == "ok"
        assert report["redis"] == "error"
        assert report["checks"]["redis"]["error"] == "refused"

    def test_only_runs_the_named_checks(self) -> None:
        out = StringIO()
        call_command("check_services", "--json", "--only", "redis", stdout=out)
        assert json.loads(out.getvalue()).keys() == {"status", "redis", "checks"}

    def test_unknown_check_is_bad_usage(self) -> None:
        with pytest.raises(CommandError) as caught:
            call_command("check_services", "--only", "db,kafka", stdout=StringIO())
        assert caught.value.returncode == 2
        assert "kafka" in str(caught.value)

    @staticmethod
    def _unhealthy_redis(redis_url: str, *arguments: str, configured_deadline: float = 1.0) -> tuple[float, dict]:
        """Run the command (in this process, where its deadlines are enforced) against a bad Redis.

        Returns how long it took and its JSON report.
        """
        out = StringIO()
        with (
            override_settings(CACHES=caches_at(redis_url), HEALTHCHECK_TIMEOUT=configured_deadline),
            pytest.raises(CommandError),
            timed() as elapsed,
        ):
            call_command("check_services", "--only", "redis", "--json", *arguments, stdout=out)
        return elapsed[0], json.loads(out.getvalue())

    @pytest.mark.parametrize("wait", ["1", "1.7"])
    def test_wait_keeps_trying_for_n_seconds(self, wait: str) -> None:
        elapsed, _ = self._unhealthy_redis(f"redis://127.0.0.1:{free_port()}/0", "--wait", wait)
        assert float(wait) <= elapsed < float(wait) + 1.0

    def test_the_last_attempt_gets_what_is_left(self, black_hole: BlackHole) -> None:
        """1 s attempts in a 1.6 s window: the second attempt is cut to 0.6 s, not skipped or run whole."""
        elapsed, report = self._unhealthy_redis(f"redis://127.0.0.1:{black_hole.port}/0", "--wait", "1.6")
        assert 1.6 <= elapsed < 1.6 + 1.0
        assert report["checks"]["redis"]["error"] == "timeout"

    def test_timeout_overrides_the_deadline(self, black_hole: BlackHole) -> None:
        hole = f"redis://127.0.0.1:{black_hole.port}/0"
        elapsed, report = self._unhealthy_redis(hole, "--timeout", "0.3", configured_deadline=10.0)
        assert report["checks"]["redis"]["error"] == "timeout"
        assert 0.3 <= elapsed < 0.3 + 1.0  # the 0.3 s deadline, never the configured 10 s

    def test_wait_never_overruns_n(self, black_hole: BlackHole) -> None:
        elapsed, _ = self._unhealthy_redis(f"redis://127.0.0.1:{black_hole.port}/0", "--wait", "1", "--timeout", "5")
        assert 1 <= elapsed < 1 + 1.0  # the window, never a whole 5 s attempt past it


@pytest.mark.slow
class TestSubprocess:
    def test_healthy_exit_0(self) -> None:
        result = run_manage("check_services", env=project_env())
        assert result.returncode == 0, result.stderr
        assert "healthy" in result.stdout.splitlines()[-1]

    def test_redis_down_exit_1(self) -> None:
        result = run_manage("check_services", env=project_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
        assert result.returncode == 1
        assert "redis" in result.stdout
        assert "Traceback" not in result.stderr

    def test_json_is_the_only_thing_on_stdout(self) -> None:
        result = run_manage("check_services", "--json", env=project_env(LOG_LEVEL="DEBUG"))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["status"] == "ok"
        assert report["db"] == report["redis"] == "ok"

    @pytest.mark.parametrize(
        "arguments",
        [
            ("--timeout", "0"),
            ("--timeout", "soon"),
            ("--timeout", "1e3"),
            ("--wait", "-1"),
            ("--wait", "inf"),
            ("--wait", "5s"),
            ("--only", "nope"),
            ("--bogus",),
        ],
    )
    def test_bad_usage_exit_2(self, arguments: tuple[str, ...]) -> None:
        result = run_manage("check_services", *arguments, env=project_env())
        assert result.returncode == 2
        assert "Traceback" not in result.stderr

    def test_wait_returns_as_soon_as_redis_comes_up(self) -> None:
        redis = RedisServer()
        starter = threading.Timer(2.0, redis.start)
        starter.start()
        try:
            with timed() as elapsed:
                result = run_manage("check_services", "--wait", "20", env=project_env(REDIS_URL=redis.url))
            assert result.returncode == 0, result.stdout + result.stderr
            assert 1.5 < elapsed[0] < 15
        finally:
            starter.join()
            redis.stop()

    def test_wait_gives_up_after_n_seconds_exactly_as_a_subprocess(self) -> None:
        with timed() as elapsed:
            result = run_manage(
                "check_services", "--wait", "2", env=project_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
            )
        assert result.returncode == 1
        assert elapsed[0] >= 2  # a lower bound holds however busy the machine is
        assert "redis" in result.stdout

    def test_wait_sees_recovery_even_with_result_caching(self) -> None:
        redis = RedisServer()
        starter = threading.Timer(2.0, redis.start)
        starter.start()
        try:
            env = project_env(REDIS_URL=redis.url, HEALTHCHECK_CACHE_SECONDS="30")
            result = run_manage("check_services", "--wait", "15", env=env)
            assert result.returncode == 0, result.stdout
        finally:
            starter.join()
            redis.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("database_url", "category"),
    [
        ("postgres://no_such_role@127.0.0.1:5432/postgres", "auth"),
        ("postgres://postgres@db.nonexistent.invalid:5432/postgres", "dns"),
        (f"postgres://postgres@127.0.0.1:{free_port()}/postgres", "refused"),
    ],
)
def test_error_categories_for_the_database(database_url: str, category: str) -> None:
    result = run_manage("check_services", "--json", "--only", "db", env=project_env(DATABASE_URL=database_url))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["checks"]["db"]["error"] == category
    # Categories only: no host names or server messages in the JSON.
    assert "invalid" not in result.stdout
    assert "no_such_role" not in result.stdout
