"""Error categories: by exception type and SQLSTATE first, by message text only as a last resort.

Each path is driven by a real failure where one can be produced here (a throwaway redis-server
with ``--requirepass``, a PostgreSQL cluster with password authentication, a real PostgreSQL
error report); the few hand-built exceptions only pin which rule wins when type and text disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from django.db import DatabaseError, connection
from django.test import override_settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.common import errors
from apps.common.errors import categorize
from apps.health.checks import run_checks
from apps.health.probes import ProbeError
from harness.processes import free_port, wait_until
from harness.servers import BlackHole, PostgresCluster, RedisServer
from tests.support import caches_at

PASSWORD = "right-secret-0123456789"


def _client(**options: Any) -> redis.Redis:
    """A client that tries once (redis-py retries with back-off by default: seconds per failure)."""
    return redis.Redis(retry=Retry(NoBackoff(), 0), **options)


def _failure(action: object) -> BaseException:
    try:
        action()  # type: ignore[operator]
    except Exception as exc:  # noqa: BLE001 - the failure is what the test looks at
        return exc
    raise AssertionError("expected a failure")


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    server = RedisServer().start("--requirepass", PASSWORD)
    yield server
    server.stop()


@pytest.mark.slow
class TestRedisByType:
    def test_no_password_is_auth_by_class_although_the_text_never_says_so(self, locked_redis: RedisServer) -> None:
        failure = _failure(lambda: _client(port=locked_redis.port, socket_timeout=2).ping())
        assert isinstance(failure, redis.exceptions.AuthenticationError)
        assert "authentication" not in str(failure).lower()  # so only the class can tell
        assert categorize(failure) == errors.AUTH

    def test_wrong_password_is_auth(self, locked_redis: RedisServer) -> None:
        failure = _failure(lambda: _client(port=locked_redis.port, password="wrong", socket_timeout=2).ping())
        assert categorize(failure) == errors.AUTH

    @pytest.mark.django_db
    def test_the_redis_probe_reports_auth(self, locked_redis: RedisServer) -> None:
        with override_settings(CACHES=caches_at(locked_redis.url)):
            result = run_checks(["redis"], timeout=2).checks["redis"]
        assert (result.ok, result.error) == (False, errors.AUTH)


def test_redis_timeout_and_refused_and_dns_by_type(black_hole: BlackHole) -> None:
    hole = _failure(lambda: _client(port=black_hole.port, socket_connect_timeout=0.2, socket_timeout=0.2).ping())
    assert isinstance(hole, redis.exceptions.TimeoutError)
    assert categorize(hole) == errors.TIMEOUT
    refused = _failure(lambda: _client(port=free_port(), socket_connect_timeout=1).ping())
    assert categorize(refused) == errors.REFUSED
    unknown_host = _failure(lambda: _client(host="redis.nonexistent.invalid", socket_connect_timeout=5).ping())
    assert categorize(unknown_host) == errors.DNS


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sqlstate", "category"),
    [("28P01", errors.AUTH), ("28000", errors.AUTH), ("57P03", errors.REFUSED)],
)
def test_a_postgresql_error_report_is_sorted_by_its_sqlstate_not_its_text(sqlstate: str, category: str) -> None:
    """A real error report from the server (as a pooler in front of PostgreSQL would relay one), whose
    message text points elsewhere: the SQLSTATE decides."""

    def raise_on_the_server() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DO $$ BEGIN RAISE EXCEPTION 'connection timed out' USING ERRCODE = '{sqlstate}'; END $$")

    failure = _failure(raise_on_the_server)
    assert isinstance(failure, DatabaseError)  # Django's wrapper; psycopg's error is its cause
    assert getattr(failure.__cause__, "sqlstate", None) == sqlstate
    assert categorize(failure) == category


@pytest.mark.slow
@pytest.mark.parametrize("postgres_cluster", [{"password": PASSWORD}], indirect=True)
class TestPostgreSQLByText:
    """libpq reports a failed connection without a SQLSTATE: its text is all there is."""

    def test_wrong_password_is_auth(self, postgres_cluster: PostgresCluster) -> None:
        failure = _failure(lambda: psycopg.connect(postgres_cluster.url_with("wrong"), connect_timeout=5))
        assert getattr(failure, "sqlstate", None) is None
        assert categorize(failure) == errors.AUTH

    def test_a_server_shutting_down_refuses(self, postgres_cluster: PostgresCluster) -> None:
        """SQLSTATE 57P03 (cannot_connect_now), as libpq words it: a smart shutdown waits for this
        session to end, and meanwhile refuses new ones."""

        def refused_while_stopping() -> BaseException | None:
            try:
                psycopg.connect(postgres_cluster.url, connect_timeout=5).close()
            except psycopg.OperationalError as failure:
                return failure if "shutting down" in str(failure) else None
            return None

        with psycopg.connect(postgres_cluster.url, autocommit=True):
            postgres_cluster.stop("smart", wait=False)
            failure = wait_until(refused_while_stopping, 30, "the server to refuse new sessions")
        assert getattr(failure, "sqlstate", None) is None
        assert categorize(failure) == errors.REFUSED


def test_which_rule_wins() -> None:
    # A category the probe named itself beats everything.
    assert categorize(ProbeError(errors.NO_WORKER, "connection refused")) == errors.NO_WORKER
    # The class beats the text...
    assert categorize(redis.exceptions.TimeoutError("connection refused")) == errors.TIMEOUT
    assert categorize(redis.exceptions.AuthenticationError("timed out")) == errors.AUTH
    assert categorize(psycopg.errors.CannotConnectNow("timed out")) == errors.REFUSED
    assert categorize(psycopg.errors.InvalidPassword("name or service not known")) == errors.AUTH
    assert categorize(psycopg.errors.ConnectionTimeout("connection refused")) == errors.TIMEOUT
    # ...and is found anywhere in the chain, outermost first.
    outer = RuntimeError("wrapper with no category of its own")
    outer.__cause__ = ConnectionRefusedError("inner")
    assert categorize(outer) == errors.REFUSED
    # The text, when there is nothing else; and unknown when not even that helps.
    assert categorize(psycopg.OperationalError("could not translate host name")) == errors.DNS
    assert categorize(RuntimeError("something else entirely")) == errors.UNKNOWN
