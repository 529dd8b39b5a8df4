"""Behind PgBouncer in transaction mode (``DATABASE_POOLER=pgbouncer``), with real processes.

A throwaway PostgreSQL cluster, Debian's ``pgbouncer`` in front of it (transaction pooling, a
pool of ``POOL_SIZE`` server connections), migrations applied through PgBouncer, then:

- ``QuerySet.iterator()`` over more rows than one chunk, under concurrent load, fails with
  ``InvalidCursorName`` when the setting is off and passes when it is on;
- three gunicorn replicas answer 10,000 ``/healthz`` and admin requests with 0 errors while
  PostgreSQL never sees more backends than PgBouncer's pool, although every process holds its
  own client connections (the probe's included).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from harness.fleet import PeakBackends, PgBouncer, staff_session
from harness.load import Load, summary
from harness.project import PYTHON, ROOT, Server, project_env, run_manage
from harness.scaling import ordinary_requests
from harness.servers import PostgresCluster, postgres_bin

pytestmark = pytest.mark.slow

POOL_SIZE = 4
DATABASE = "app"
ROWS, CHUNK, THREADS = 1000, 100, 8  # ten chunks per iteration, eight at once, eight more loading
REPLICAS, WEB_CONCURRENCY, THREADS_PER_WORKER = 3, 2, 4  # gunicorn.conf.py: threads = 4


@dataclass
class Pooled:
    cluster: PostgresCluster
    bouncer: PgBouncer

    def env(self, pooler: str = "pgbouncer", **overrides: str | None) -> dict[str, str]:
        return project_env(False, DATABASE_URL=self.bouncer.url(DATABASE), DATABASE_POOLER=pooler, **overrides)


@pytest.fixture(scope="module")
def pooled() -> Iterator[Pooled]:
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed on this machine")
    cluster = PostgresCluster().start()
    bouncer = PgBouncer(cluster.port, pool_size=POOL_SIZE)
    try:
        bouncer.start()
        with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        setup = Pooled(cluster, bouncer)
        migrated = run_manage("migrate", "--no-input", env=setup.env(), timeout=300)
        assert migrated.returncode == 0, migrated.stderr
        yield setup
    finally:
        bouncer.destroy()
        cluster.destroy()


def _iterate(pooled: Pooled, pooler: str) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "-m", "tests.pooler_iterate", str(ROWS), str(THREADS), str(CHUNK)],
        cwd=ROOT,
        env=pooled.env(pooler),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_iterator_under_concurrent_load_needs_server_side_cursors_off(pooled: Pooled) -> None:
    """Django's "Transaction pooling and server-side cursors", reproduced and fixed.

    Off: the named cursor that ``iterator()`` declares lives on one server connection, and the
    next ``FETCH`` runs in another transaction that PgBouncer may give to another one.
    """
    off = _iterate(pooled, "none")
    assert off["errors"].get("34000", 0) > 0, off  # 34000: invalid_cursor_name
    assert off["seen"] != [ROWS] * THREADS

    on = _iterate(pooled, "pgbouncer")
    assert on == {"rows": ROWS, "seen": [ROWS] * THREADS, "errors": {}}


@pytest.mark.usefixtures("collected_static")
@pytest.mark.timeout(600)  # 10,000 requests: about a minute on a loaded two-core machine
def test_three_replicas_share_the_pool(pooled: Pooled) -> None:
    session = staff_session(pooled.env())
    # The probe's own deadline is not under test here (tests/test_health_faults.py owns it): a
    # starved two-core machine must not turn a slow SELECT 1 into a 503 (config/settings/test.py).
    env = pooled.env(WEB_CONCURRENCY=str(WEB_CONCURRENCY), HEALTHCHECK_TIMEOUT="5")
    servers = [Server(env) for _ in range(REPLICAS)]
    try:
        for server in servers:
            server.start(wait=60)
        # Three probes for one admin page (the index, or the list of users).
        requests = [request for server in servers for request in ordinary_requests(session, server.port)]
        with PeakBackends(pooled.cluster.url, DATABASE) as peak:
            samples = Load(servers[0].port, requests, connections=16, total=10_000).start().wait(timeout=600)
            clients = [client for client in pooled.bouncer.show("CLIENTS") if client["database"] == DATABASE]
        counts = summary(samples)
        assert counts["statuses"] == {"200": 10_000}, counts
        assert {server.port: sum(s.port == server.port for s in samples) > 3000 for server in servers} == {
            server.port: True for server in servers
        }
        assert peak.samples > 0
        assert peak.peak <= POOL_SIZE, f"{peak.peak} PostgreSQL backends for a pool of {POOL_SIZE}"
        # Every gunicorn worker keeps its own persistent client connections to PgBouncer (the
        # probe thread's and the request threads'); PgBouncer multiplexes them onto the pool.
        assert len(clients) >= REPLICAS * WEB_CONCURRENCY > POOL_SIZE
    finally:
        for server in servers:
            server.stop()
