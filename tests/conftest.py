"""Shared fixtures: throwaway servers and the project's processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from harness.sandbox import Sandbox, sandbox_available
from harness.servers import BlackHole, PostgresCluster, RedisServer, postgres_bin


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
    from apps.health import runner

    runner.stop_all()


@pytest.fixture(autouse=True)
def _in_process_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ``make test-fast`` honest: a test that starts a process must be marked ``slow``."""
    if request.node.get_closest_marker("slow") is not None:
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        pytest.fail(f"{request.node.nodeid} starts a process: mark it @pytest.mark.slow", pytrace=False)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    # A probe of this process may still be stuck in its handshake with the hole (that part cannot
    # be cut): the next test must get fresh runners, not join that late run and answer "timeout".
    from apps.health import runner

    runner.stop_all()
    hole.close()


@pytest.fixture
def postgres_cluster(request: pytest.FixtureRequest) -> Iterator[PostgresCluster]:
    """A started throwaway cluster; parametrize it indirectly with ``PostgresCluster`` options (``password``)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed on this machine")
    cluster = PostgresCluster(**getattr(request, "param", {}))
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A newcomer's machine with `make run` serving (harness.sandbox); shared by the docs tests."""
    reason = sandbox_available()
    if reason is not None:
        pytest.skip(f"no sandbox on this machine: {reason}")
    with Sandbox() as box:
        yield box


@pytest.fixture(scope="session")
def collected_static() -> None:
    """Production settings serve the admin's CSS from the collectstatic manifest."""
    from harness.project import project_env, run_manage

    result = run_manage("collectstatic", "--noinput", "-v0", env=project_env(), timeout=120)
    assert result.returncode == 0, result.stderr
