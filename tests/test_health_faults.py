"""Health checks against misbehaving servers: refused, black-holed, slow, hanging, restarted.

Every server here is real and started by the test on a free port (redis-server, a PostgreSQL
cluster from initdb, a TCP black hole, a delaying proxy); the shared services are never touched
except through a proxy.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psycopg
import pytest
from django.test import override_settings

from apps.health.checks import run_checks
from harness.processes import child_pids, established_connections, process_threads, timed, wait_until
from harness.project import DATABASE_URL, PYTHON, ROOT, ProbeAnswer, Server, project_env
from harness.servers import BlackHole, DelayProxy, PostgresCluster, RedisServer
from tests.support import caches_at

TOKEN = "fault-test-token-0123456789-abcdefghij"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE = 1.0
MARGIN = 0.25  # the contract: an answer within HEALTHCHECK_TIMEOUT + 0.25 s
# The round trip seen from here also counts how a loaded machine schedules two processes; it is
# bounded only loosely (a hang is still caught), the deadline itself is checked server-side.
ROUND_TRIP_SLACK = 3.0
SHARED_PG_PORT = urlsplit(DATABASE_URL).port or 5432

pytestmark = pytest.mark.slow  # every test here starts real processes


def _server_env(**overrides: str) -> dict[str, str]:
    # DEBUG: the server logs each probe's own duration (health_probe), which Server.probe reads.
    defaults = {"WEB_CONCURRENCY": "1", "HEALTHCHECK_TOKEN": TOKEN, "HEALTHCHECK_TIMEOUT": str(DEADLINE)}
    return project_env(False, **{**defaults, "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json", **overrides})


def _probe(server: Server, path: str = "/healthz?verbose=1", headers: dict[str, str] = AUTH) -> ProbeAnswer:
    """A probe whose answer came within the deadline, measured where it is enforced."""
    answer = server.probe(path, headers)
    assert answer.server_seconds <= DEADLINE + MARGIN, f"the probe took {answer.server_seconds:.3f}s in the server"
    assert answer.round_trip_seconds <= DEADLINE + ROUND_TRIP_SLACK
    return answer


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
            answer = _probe(server)
            assert answer.status == 503
            assert answer.body[service] == "error"
            assert answer.body["checks"][service]["error"] == "timeout"
            if attempt == 0:
                baseline_threads = process_threads(worker)
            peak_threads = max(peak_threads, process_threads(worker))
            peak_connections = max(peak_connections, established_connections(worker, black_hole.port))
        # One probe thread per check; at most the gthread pool (4) grows beside it.
        assert peak_threads <= baseline_threads + 3
        # A stuck probe pins one connection; the one before it may not be closed yet.
        assert peak_connections <= 2


def test_refused_is_immediate_and_named() -> None:
    from harness.processes import free_port

    with Server(_server_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")) as server:
        answer = _probe(server)
    assert answer.status == 503
    assert answer.body["checks"]["redis"]["error"] == "refused"
    assert answer.server_seconds < DEADLINE  # not a timeout in disguise


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
                answer = _probe(server)
                assert answer.status == 503
                assert answer.body["checks"][service]["error"] == "timeout"
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
            assert _probe(server).status == 200  # the persistent probe connection exists now
            proxy.delay = 60
            answer = _probe(server)
            assert (answer.status, answer.body["db"]) == (503, "error")
            proxy.delay = 0
            # Well inside the 60 s the hung reply would take: the probe was cut loose.
            _wait_for(server, 200, "the database probe to recover from the hung connection")
    finally:
        proxy.close()


RECOVERY_CAP = 15.0  # far below any TCP or driver timeout that would free a stuck probe by itself


def _wait_for(server: Server, status: int, what: str, seen: list[int] | None = None) -> None:
    """Probe until ``status`` comes back (within RECOVERY_CAP); ``seen`` records every status."""

    def answered() -> bool:
        response = server.get("/healthz")
        if seen is not None:
            seen.append(response.status)
        return response.status == status

    wait_until(answered, RECOVERY_CAP, what)


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
            _wait_for(server, 200, f"/healthz to recover after {service} restarted", seen=statuses)
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


def test_concurrent_probes_share_one_run(redis_server: RedisServer, postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_statement=all")
    db_proxy = DelayProxy(postgres_cluster.port)
    redis_proxy = DelayProxy(redis_server.port)
    env = _server_env(
        REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{db_proxy.port}/postgres",
        HEALTHCHECK_TIMEOUT="5",
    )
    # runserver: one thread per request, so all 50 probes really are in flight together.
    with Server(env, kind="runserver") as server:
        try:
            assert server.get("/healthz").status == 200  # warm: the probe connections exist
            # PostgreSQL logs a statement before it runs it, so a count read now is complete.
            statements, pings = _statements(postgres_cluster), _pings(redis_server)
            db_proxy.delay = redis_proxy.delay = 1.5  # hold both probes' replies
            with ThreadPoolExecutor(50) as pool:
                statuses = list(pool.map(lambda _: server.get("/healthz", timeout=15).status, range(50)))
        finally:
            db_proxy.close()
            redis_proxy.close()
    assert statuses == [200] * 50
    assert _statements(postgres_cluster) - statements == 1
    assert _pings(redis_server) - pings == 1


def test_cache_seconds_reuses_one_result(redis_server: RedisServer, postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_statement=all")
    window = 3.0
    env = _server_env(
        REDIS_URL=redis_server.url, DATABASE_URL=postgres_cluster.url, HEALTHCHECK_CACHE_SECONDS=str(window)
    )
    with Server(env) as server:
        asked = time.monotonic()
        # Runs the checks (and opens both probe connections, whose first use sends its own
        # health-check PING), and starts the window.
        assert server.get("/healthz").status == 200
        answered = time.monotonic()
        statements, pings = _statements(postgres_cluster), _pings(redis_server)
        while time.monotonic() - asked < 1.0:
            assert server.get("/healthz").status == 200
        within = (_statements(postgres_cluster) - statements, _pings(redis_server) - pings)
        # The window opened between `asked` and `answered` (one system-wide monotonic clock): it
        # is surely over `window` seconds after `answered`. Wait for that moment, then ask again.
        time.sleep(max(0.0, answered + window + 0.1 - time.monotonic()))
        assert server.get("/healthz").status == 200
        after = (_statements(postgres_cluster) - statements, _pings(redis_server) - pings)
    # Not one run for the probes inside the window...
    assert within == (0, 0)
    # ...and exactly one once it has passed.
    assert after == (1, 1)


def test_probing_opens_no_new_database_connections(postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_connections=on")

    def connections() -> int:
        # Logged before the client's connect returns: a count read after a probe is complete.
        return postgres_cluster.log_path.read_text().count("connection authorized")

    with (
        Server(_server_env(DATABASE_URL=postgres_cluster.url, WEB_CONCURRENCY="2")) as server,
        ThreadPoolExecutor(4) as pool,
    ):

        def probe_many(count: int) -> list[int]:
            return list(pool.map(lambda _: server.get("/healthz").status, range(count)))

        # Warm-up: until both gunicorn workers have opened their one probe connection.
        wait_until(lambda: set(probe_many(20)) == {200} and connections() >= 2, 60, "both probe connections")
        assert connections() == 2
        assert set(probe_many(1000)) == {200}
        assert connections() == 2


def _second_database_env(second_url: str, critical: bool = True, **overrides: str) -> dict[str, str]:
    """A server whose second database alias is probed by settings alone (tests/settings_second_database.py)."""
    return _server_env(
        DJANGO_SETTINGS_MODULE="tests.settings_second_database",
        SECOND_DATABASE_URL=second_url,
        SECOND_DATABASE_CRITICAL=str(critical).lower(),
        **overrides,
    )


def test_a_second_database_added_by_settings_reuses_its_connection(postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.stop()
    postgres_cluster.start("log_connections=on")
    with psycopg.connect(postgres_cluster.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE second")

    own = postgres_cluster.log_path.read_text().count("connection authorized")  # CREATE DATABASE's

    def connections(database: str) -> int:
        log = postgres_cluster.log_path.read_text()
        count = log.count(f"connection authorized: user=postgres database={database}")
        return count - own if database == "postgres" else count

    second_url = postgres_cluster.url.rsplit("/", 1)[0] + "/second"
    env = _second_database_env(second_url, DATABASE_URL=postgres_cluster.url, WEB_CONCURRENCY="2")
    with Server(env) as server, ThreadPoolExecutor(4) as pool:
        assert json.loads(server.get("/healthz").body) == {"status": "ok", "db": "ok", "redis": "ok", "second_db": "ok"}

        def probe_many(count: int) -> list[int]:
            return list(pool.map(lambda _: server.get("/healthz").status, range(count)))

        # Warm-up: until both gunicorn workers have opened their probe connection to each database.
        wait_until(
            lambda: set(probe_many(20)) == {200} and connections("postgres") >= 2 and connections("second") >= 2,
            60,
            "both workers' probe connections",
        )
        assert (connections("postgres"), connections("second")) == (2, 2)
        assert set(probe_many(1000)) == {200}
        assert (connections("postgres"), connections("second")) == (2, 2)


@pytest.mark.parametrize("critical", [False, True])
def test_a_black_holed_second_database_answers_in_time(black_hole: BlackHole, critical: bool) -> None:
    hole = f"postgres://postgres@127.0.0.1:{black_hole.port}/postgres"
    health_json = {**AUTH, "Accept": "application/health+json"}
    with Server(_second_database_env(hole, critical=critical)) as server:
        for _ in range(3):  # the first run misses the deadline; the next ones find it late
            answer = _probe(server)
            assert (answer.body["db"], answer.body["redis"], answer.body["second_db"]) == ("ok", "ok", "error")
            assert answer.body["checks"]["second_db"]["error"] == "timeout"
            assert answer.body["checks"]["second_db"]["critical"] is critical
            assert (answer.status, answer.body["status"]) == ((503, "error") if critical else (200, "ok"))
            described = _probe(server, "/readyz", health_json)
            (entry,) = described.body["checks"]["second_db:responseTime"]
            assert (described.status, described.body["status"], entry["status"]) == (
                (503, "fail", "fail") if critical else (200, "warn", "warn")
            )
            assert entry["output"] == "timeout"


def test_a_stopped_worker_closes_its_probe_connections_cleanly(postgres_cluster: PostgresCluster) -> None:
    """SIGTERM: the gunicorn worker exits through ``sys.exit``, so its ``atexit`` hook runs: it stops
    the probe threads, and each closes its persistent connection (a Terminate message). A connection
    merely dropped with the process shows as "unexpected EOF" (logged at DEBUG1) instead."""
    postgres_cluster.stop()
    postgres_cluster.start("log_connections=on", "log_disconnections=on", "log_min_messages=debug1")
    log = postgres_cluster.log_path
    server = Server(_server_env(DATABASE_URL=postgres_cluster.url)).start()
    try:
        worker = _only_worker(server)
        assert server.get("/healthz").status == 200  # the probe's persistent connection exists now
        assert log.read_text().count("connection authorized") == 1
    finally:
        assert server.stop() == 0
    (stopped,) = [event for event in server.events() if event["event"] == "background_threads_stopped"]
    assert stopped["pid"] == worker
    assert stopped["threads"] == stopped["ended"] == 2  # the db and redis probes
    wait_until(lambda: "disconnection: session time" in log.read_text(), 15, "the probe connection to end")
    assert "unexpected EOF on client connection" not in log.read_text()


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
    """Probe threads are daemons: a check stuck on a black hole must not keep the command alive.

    The database probe is stuck in its connect (nothing there to cut yet) until libpq's
    connect_timeout, 30 s here: a non-daemon thread (or an exit that waited for it) would hold the
    finished command about that long. The bound is far from both that and the few seconds a
    loaded machine may take to tear an interpreter down, so it holds on either.
    """
    env = project_env(
        REDIS_URL=f"redis://127.0.0.1:{black_hole.port}/0",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{black_hole.port}/postgres?connect_timeout=30",
    )
    command = [PYTHON, "manage.py", "check_services", "--json", "--timeout", "0.3"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        answer = process.stdout.readline()  # the report is one line, written as the command ends
        answered = time.monotonic()
        try:
            returncode = process.wait(60)
        finally:
            process.kill()
        lingered = time.monotonic() - answered
    assert returncode == 1
    report = json.loads(answer)
    assert report["checks"]["redis"]["error"] == report["checks"]["db"]["error"] == "timeout"
    assert lingered < 15, f"the command lived {lingered:.2f}s after its answer"


def test_wait_with_redis_black_hole_keeps_threads_bounded(black_hole: BlackHole) -> None:
    env = project_env(REDIS_URL=f"redis://127.0.0.1:{black_hole.port}/0")
    command = [PYTHON, "manage.py", "check_services", "--wait", "4", "--timeout", "0.3"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[int, int]] = []
    try:
        # Sampled all along, not once: every attempt is abandoned at its deadline, and none may
        # leave a thread or a connection behind.
        while process.poll() is None:
            with contextlib.suppress(OSError):  # the process may end between two reads
                samples.append((process_threads(process.pid), established_connections(process.pid, black_hole.port)))
            time.sleep(0.02)
        lived = time.monotonic() - started
        stdout, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "timeout" in stdout
    # 4 s of 0.3 s attempts (each joining or abandoning the stuck one), watched all along.
    assert lived >= 4
    assert len(samples) >= 20
    assert max(threads for threads, _ in samples) <= 4  # main + the db and redis probe threads (+1 spare)
    assert max(connections for _, connections in samples) <= 2


def test_redis_silent_peer_is_cut_loose_once_redis_is_back() -> None:
    """A PING stuck on a connection that never closes (no FIN) must not outlive recovery."""
    hole = BlackHole()
    redis = RedisServer(port=hole.port)
    try:
        with Server(_server_env(REDIS_URL=redis.url)) as server:
            assert _probe(server).status == 503  # the probe's connection now hangs in the hole
            hole.close_listener()  # the stuck connection stays open and silent
            redis.start()
            _wait_for(server, 200, "the Redis probe to recover from the silent connection")
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
                assert _probe(server, path, cookie).body.keys() == {"status", "db", "redis"}
    finally:
        proxy.close()
