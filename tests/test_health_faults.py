"""Health checks against misbehaving servers: refused, black-holed, slow, hanging, restarted.

Every server here is real and started by the test on a free port (redis-server, a PostgreSQL
cluster from initdb, a TCP black hole, a delaying proxy); the shared services are never touched
except through a proxy.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from apps.health.checks import run_checks
from tests.support import (
    DATABASE_URL,
    PYTHON,
    ROOT,
    BlackHole,
    DelayProxy,
    PostgresCluster,
    RedisServer,
    Server,
    caches_at,
    child_pids,
    established_connections,
    process_threads,
    project_env,
    run_manage,
    timed,
)

TOKEN = "fault-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE = 1.0
MARGIN = 0.25  # the contract: an answer within HEALTHCHECK_TIMEOUT + 0.25 s
SHARED_PG_PORT = urlsplit(DATABASE_URL).port or 5432


def _server_env(**overrides: str) -> dict[str, str]:
    defaults = {"WEB_CONCURRENCY": "1", "HEALTHCHECK_TOKEN": TOKEN, "HEALTHCHECK_TIMEOUT": str(DEADLINE)}
    return project_env(False, **{**defaults, "LOG_LEVEL": "WARNING", **overrides})


def _probe(server: Server) -> tuple[float, int, dict[str, object]]:
    with timed() as elapsed:
        response = server.get("/healthz?verbose=1", AUTH)
    return elapsed[0], response.status, json.loads(response.body)


def _only_worker(server: Server) -> int:
    assert server.process is not None
    (worker,) = child_pids(server.process.pid)
    return worker


@pytest.mark.parametrize("service", ["redis", "db"])
def test_black_hole_answers_in_time_and_stays_bounded(black_hole: BlackHole, service: str) -> None:
    hole_url = {
        "redis": {"REDIS_URL": f"redis://127.0.0.1:{black_hole.port}/0"},
        "db": {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{black_hole.port}/postgres"},
    }[service]
    with Server(_server_env(**hole_url)) as server:
        worker = _only_worker(server)
        peak_threads = peak_connections = 0
        for attempt in range(20):
            elapsed, status, body = _probe(server)
            assert elapsed <= DEADLINE + MARGIN, f"probe {attempt} took {elapsed:.3f}s"
            assert status == 503
            assert body[service] == "error"
            assert body["checks"][service]["error"] == "timeout"  # type: ignore[index]
            if attempt == 0:
                baseline_threads = process_threads(worker)
            peak_threads = max(peak_threads, process_threads(worker))
            peak_connections = max(peak_connections, established_connections(worker, black_hole.port))
        # One probe thread per check; at most the gthread pool (4) grows beside it.
        assert peak_threads <= baseline_threads + 3
        # A stuck probe pins one connection; the one before it may not be closed yet.
        assert peak_connections <= 2


def test_refused_is_immediate_and_named() -> None:
    from tests.support import free_port

    with Server(_server_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")) as server:
        elapsed, status, body = _probe(server)
    assert status == 503
    assert body["checks"]["redis"]["error"] == "refused"  # type: ignore[index]
    assert elapsed < DEADLINE


@pytest.mark.parametrize("service", ["redis", "db"])
def test_slow_server_is_a_timeout_not_a_hang(redis_server: RedisServer, service: str) -> None:
    upstream = {"redis": redis_server.port, "db": SHARED_PG_PORT}[service]
    proxy = DelayProxy(upstream, delay=5.0)
    url = {
        "redis": {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"},
        "db": {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/postgres"},
    }[service]
    try:
        with Server(_server_env(**url)) as server:
            for _ in range(3):
                elapsed, status, body = _probe(server)
                assert elapsed <= DEADLINE + MARGIN
                assert status == 503
                assert body["checks"][service]["error"] == "timeout"  # type: ignore[index]
    finally:
        proxy.close()


def test_database_hanging_mid_conversation_is_cut_loose() -> None:
    """A persistent connection whose server stops answering: the probe must not stay stuck.

    libpq has no client-side query timeout; without the probe shutting the socket down, the
    probe thread would wait the full 60 s delay and every probe meanwhile would time out.
    """
    proxy = DelayProxy(SHARED_PG_PORT, delay=0)
    try:
        url = f"postgres://postgres@127.0.0.1:{proxy.port}/postgres"
        with Server(_server_env(DATABASE_URL=url)) as server:
            assert _probe(server)[1] == 200  # the persistent probe connection exists now
            proxy.delay = 60
            elapsed, status, body = _probe(server)
            assert elapsed <= DEADLINE + MARGIN
            assert (status, body["db"]) == (503, "error")
            proxy.delay = 0
            recovered_after = _wait_for(server, 200, within=2 + DEADLINE)
            assert recovered_after is not None, "the database probe stayed stuck on the hung connection"
    finally:
        proxy.close()


def _wait_for(server: Server, status: int, within: float, seen: list[int] | None = None) -> float | None:
    """Probe until ``status`` comes back; the seconds it took, or None. Records every status."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        response = server.get("/healthz")
        if seen is not None:
            seen.append(response.status)
        if response.status == status:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


@pytest.fixture(autouse=True)
def _static(collected_static: None) -> None:
    """The admin login page (side traffic below) needs the static manifest."""


def _side_traffic(server: Server, stop: threading.Event, statuses: list[int]) -> None:
    """Other endpoints, hit throughout an outage: none may answer 500."""
    while not stop.is_set():
        for path in ("/livez", "/readyz", "/admin/login/"):
            statuses.append(server.get(path).status)
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("service", "fixture", "variable"),
    [
        ("redis", "redis_server", "REDIS_URL"),
        ("db", "postgres_cluster", "DATABASE_URL"),
    ],
)
def test_restart_is_noticed_and_recovered_without_restarting_the_app(
    request: pytest.FixtureRequest, service: str, fixture: str, variable: str
) -> None:
    dependency: RedisServer | PostgresCluster = request.getfixturevalue(fixture)
    with Server(_server_env(**{variable: dependency.url})) as server:
        worker_before = _only_worker(server)
        assert server.get("/healthz").status == 200
        statuses: list[int] = []
        stop = threading.Event()
        side = threading.Thread(target=_side_traffic, args=(server, stop, statuses))
        side.start()
        try:
            dependency.stop()
            response = server.get("/healthz")  # the very next probe sees it
            assert response.status == 503
            assert json.loads(response.body) == {"status": "error", "db": "ok", "redis": "ok", service: "error"}
            dependency.start()
            assert _wait_for(server, 200, within=2 + DEADLINE, seen=statuses) is not None
        finally:
            stop.set()
            side.join()
        assert 500 not in statuses
        assert _only_worker(server) == worker_before


def test_any_host_and_plain_http_with_ssl_redirect_on() -> None:
    with Server(_server_env(DJANGO_SECURE_SSL_REDIRECT="true")) as server:
        for path in ("/livez", "/readyz", "/healthz"):
            assert server.get(path, {"Host": "10.42.0.17:8000"}).status == 200
        redirected = server.get("/admin/login/", {"Host": "localhost"})
        assert redirected.status == 301
        assert redirected.headers["location"].startswith("https://localhost/")
        assert server.get("/admin/login/", {"Host": "10.42.0.17"}).status == 400


def _statements(cluster: PostgresCluster) -> int:
    return cluster.log_path.read_text(errors="replace").count("statement: SELECT 1\n")


def _pings(redis: RedisServer) -> int:
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_ping:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def _settled(read: Callable[[], int], pause: float = 0.3) -> int:
    """A counter read after the server had a moment to write it (logs are flushed async)."""
    time.sleep(pause)
    return int(read())


def test_concurrent_probes_share_one_run(redis_server: RedisServer, postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_statement=all")
    redis_server.stop()
    redis_server.start("--enable-debug-command", "yes")
    db_proxy = DelayProxy(postgres_cluster.port)
    env = _server_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{db_proxy.port}/postgres",
        HEALTHCHECK_TIMEOUT="5",
    )
    # runserver: one thread per request, so all 50 probes really are in flight together.
    with Server(env, kind="runserver") as server:
        try:
            assert server.get("/healthz").status == 200  # warm: the probe connections exist
            statements, pings = _settled(lambda: _statements(postgres_cluster)), _pings(redis_server)
            db_proxy.delay = 1.5  # hold the database probe's reply
            sleeper = threading.Thread(target=redis_server.command, args=("DEBUG", "SLEEP", "1.5"))
            sleeper.start()  # and Redis: every command waits
            time.sleep(0.1)
            with ThreadPoolExecutor(50) as pool:
                statuses = list(pool.map(lambda _: server.get("/healthz", timeout=15).status, range(50)))
            sleeper.join()
        finally:
            db_proxy.close()
    assert statuses == [200] * 50
    assert _settled(lambda: _statements(postgres_cluster)) - statements == 1
    assert _pings(redis_server) - pings == 1


def test_cache_seconds_reuses_one_result(redis_server: RedisServer, postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_statement=all")
    env = _server_env(REDIS_URL=redis_server.url, DATABASE_URL=postgres_cluster.url, HEALTHCHECK_CACHE_SECONDS="2")
    with Server(env) as server:
        assert server.get("/healthz").status == 200
        statements, pings = _settled(lambda: _statements(postgres_cluster)), _pings(redis_server)
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            assert server.get("/healthz").status == 200
        cached_statements = _settled(lambda: _statements(postgres_cluster)) - statements
        cached_pings = _pings(redis_server) - pings
        time.sleep(2.1)
        assert server.get("/healthz").status == 200
        fresh_statements = _settled(lambda: _statements(postgres_cluster)) - statements
        fresh_pings = _pings(redis_server) - pings
    # The first probe in the window was cached already: within 2 s no new run at all...
    assert (cached_statements, cached_pings) == (0, 0)
    # ...and once the window has passed, exactly one.
    assert (fresh_statements, fresh_pings) == (1, 1)


def test_probing_opens_no_new_database_connections(postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_connections=on")

    def connections() -> int:
        return postgres_cluster.log_path.read_text().count("connection authorized")

    with (
        Server(_server_env(DATABASE_URL=postgres_cluster.url, WEB_CONCURRENCY="2")) as server,
        ThreadPoolExecutor(4) as pool,
    ):

        def probe_many(count: int) -> list[int]:
            return list(pool.map(lambda _: server.get("/healthz").status, range(count)))

        # Warm-up: until both gunicorn workers have opened their one probe connection.
        deadline = time.monotonic() + 20
        while connections() < 2 and time.monotonic() < deadline:
            assert set(probe_many(20)) == {200}
        assert _settled(connections) == 2
        assert set(probe_many(1000)) == {200}
        assert _settled(connections) == 2


@pytest.mark.django_db
def test_run_checks_deadline_in_process(black_hole: BlackHole) -> None:

    with override_settings(CACHES=caches_at(f"redis://127.0.0.1:{black_hole.port}/0")):
        threads_before = threading.active_count()
        for _ in range(5):
            with timed() as elapsed:
                report = run_checks(timeout=0.5)
            assert elapsed[0] <= 0.5 + MARGIN
            assert report.checks["redis"].error == "timeout"
            assert report.checks["db"].ok
        assert threading.active_count() <= threads_before + 2


def test_check_services_does_not_outlive_its_answer(black_hole: BlackHole) -> None:
    """Probe threads are daemons: a check stuck on a black hole must not keep the command alive."""
    env = project_env(
        REDIS_URL=f"redis://127.0.0.1:{black_hole.port}/0",
        DATABASE_URL=(f"postgres://postgres@127.0.0.1:{black_hole.port}/postgres"),
    )
    with timed() as healthy:
        assert run_manage("check_services", env=project_env()).returncode == 0
    with timed() as stuck:
        result = run_manage("check_services", "--json", env=env)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["checks"]["redis"]["error"] == report["checks"]["db"]["error"] == "timeout"
    # Start-up costs the same either way; the stuck run adds the deadline and little else.
    assert stuck[0] - healthy[0] <= DEADLINE + 0.6


def test_wait_with_redis_black_hole_keeps_threads_bounded(black_hole: BlackHole) -> None:
    env = project_env(REDIS_URL=f"redis://127.0.0.1:{black_hole.port}/0")
    command = [PYTHON, "manage.py", "check_services", "--wait", "6", "--timeout", "0.3"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # several attempts in, each abandoned at its deadline
        threads = process_threads(process.pid)
        connections = established_connections(process.pid, black_hole.port)
        stdout, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "timeout" in stdout
    assert threads <= 4  # main + the db and redis probe threads (+1 spare)
    assert connections <= 2


def test_redis_silent_peer_is_cut_loose_once_redis_is_back() -> None:
    """A PING stuck on a connection that never closes (no FIN) must not outlive recovery."""
    hole = BlackHole()
    redis = RedisServer(port=hole.port)
    try:
        with Server(_server_env(REDIS_URL=redis.url)) as server:
            assert _probe(server)[1] == 503  # the probe's connection now hangs in the hole
            hole.close_listener()  # the stuck connection stays open and silent
            redis.start()
            recovered_after = _wait_for(server, 200, within=2 + DEADLINE)
            assert recovered_after is not None, "the Redis probe stayed stuck on the silent connection"
    finally:
        hole.close()
        redis.stop()


def test_details_for_a_session_cookie_stay_within_the_deadline(collected_static: None) -> None:
    """A made-up session cookie must not buy a stranger a slow database lookup past the deadline."""
    proxy = DelayProxy(SHARED_PG_PORT, delay=0)
    try:
        url = f"postgres://postgres@127.0.0.1:{proxy.port}/postgres"
        with Server(_server_env(DATABASE_URL=url)) as server:
            assert server.get("/healthz").status == 200
            proxy.delay = 0.6  # every reply from the database takes 0.6 s: slow, but within the deadline
            cookie = {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"}
            for path in ("/healthz?verbose=1", "/readyz?verbose=1"):
                with timed() as elapsed:
                    response = server.get(path, cookie)
                assert elapsed[0] <= DEADLINE + MARGIN
                assert json.loads(response.body).keys() == {"status", "db", "redis"}
    finally:
        proxy.close()
