"""Shared fixtures: throwaway servers and the project's processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import BlackHole, PostgresCluster, RedisServer, postgres_bin


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After `-m` chose the tests: without a Docker engine, the selected Docker tests skip, one line."""
    from tests.docker_support import skip_without_engine

    skip_without_engine(items)


@pytest.fixture(autouse=True, scope="session")
def _close_probe_connections(django_db_setup: None, django_db_blocker) -> Iterator[None]:
    """Probe threads keep a persistent connection; close it before the test database is dropped.

    Depending on ``django_db_setup`` makes this teardown run before the database is dropped.
    """
    yield
    from apps.health import access, checks

    checks.shutdown()
    access.shutdown()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed on this machine")
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def collected_static() -> None:
    """Production settings serve the admin's CSS from the collectstatic manifest."""
    from tests.support import project_env, run_manage

    result = run_manage("collectstatic", "--noinput", "-v0", env=project_env(), timeout=120)
    assert result.returncode == 0, result.stderr
