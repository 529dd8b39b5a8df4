"""The ``scaling`` section of ``make bench``: several replicas behind the ordinary tools (docs/scaling.md).

- scenarios (``harness.scaling``): three gunicorn replicas and two rq workers behind HAProxy
  (``deploy/haproxy/haproxy.cfg``), steady load at 16 connections through it: a rolling
  restart, a replica whose database path black-holes and heals, a Redis restart.
- budget: the same three replicas straight to PostgreSQL, then through PgBouncer in
  transaction mode, under the same load: the most backends PostgreSQL ever held, against the
  connection budget's formula and PgBouncer's pool.
- worker probe: what one ``manage.py worker_alive`` (the worker Deployment's liveness probe)
  costs: wall time, CPU time and memory of the process.

Everything runs on throwaway servers on free ports; ``--quick`` sends fewer requests.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from typing import Any, Protocol

import psycopg

from harness.fleet import PeakBackends, PgBouncer, RqWorker, staff_session
from harness.load import Load, summary
from harness.project import PYTHON, ROOT, Server, project_env, run_manage
from harness.scaling import (
    CONNECTIONS,
    DATABASE,
    REPLICAS,
    WEB_CONCURRENCY,
    Fleet,
    database_path_lost,
    ordinary_requests,
    redis_restarted,
    rolling_restart,
)
from harness.servers import PostgresCluster, RedisServer

POOL_SIZE = 10
THREADS = 4  # gunicorn.conf.py
PROBE_RUNS = 7


class Report(Protocol):
    tables: dict[str, list[list[str]]]
    data: dict[str, Any]

    def add(self, area: str, target: str, measured: str, ok: bool | None) -> None: ...


def say(message: str) -> None:
    print(message, flush=True)


def section(report: Report, quick: bool = False) -> None:
    scenarios(report)
    budget(report, requests=1_000 if quick else 4_000)
    worker_probe(report, runs=3 if quick else PROBE_RUNS)


# --- scenarios --------------------------------------------------------------------------------


def scenarios(report: Report) -> None:
    say(f"\n== scaling: {REPLICAS} replicas and 2 rq workers behind HAProxy, {CONNECTIONS} connections")
    fleet = Fleet.start()
    try:
        rolling = rolling_restart(fleet)
        say(f"  rolling restart: {rolling['load']}")
        lost = database_path_lost(fleet)
        say(f"  database path lost: marked down after {lost['marked_down_s']:.2f} s; {lost['load']}")
        redis = redis_restarted(fleet)
        say(f"  redis restarted: {redis['jobs_finished']}/{redis['jobs_accepted']} jobs finished")
    finally:
        fleet.stop()
    report.data["scenarios"] = {"rolling_restart": rolling, "database_path_lost": lost, "redis_restarted": redis}

    load = rolling["load"]
    report.add(
        "scaling",
        "rolling restart (SIGTERM, one replica after another): 0 failed requests",
        f"{load['failed']} of {load['requests']:,} failed; slowest {load['max_seconds']:.2f} s; HAProxy retried "
        f"{rolling['haproxy']['retries']}, redispatched {rolling['haproxy']['redispatches']}",
        load["failed"] == 0,
    )
    bound = lost["bound_s"]
    listener = "on the probe listener" if lost["probe_listener"] else "without a probe listener: + `timeout check`"
    report.add(
        "scaling",
        f"database path black-holed: out of rotation within {bound:g} s ({listener})",
        f"{lost['marked_down_s']:.2f} s",
        lost["marked_down_s"] <= bound,
    )
    report.add(
        "scaling",
        "after it is marked down: no 5xx from it, no request unanswered",
        f"{lost['five_xx_from_it_after_down']} 5xx from it, {lost['answered_by_it_while_down']} answers from it, "
        f"{lost['unanswered']} unanswered; slowest {lost['slowest_s']:.2f} s (at most HAProxy's timeout server, "
        f"then another replica); before it was out: {lost['before_down']['statuses']}",
        lost["five_xx_from_it_after_down"] == 0 and lost["unanswered"] == 0,
    )
    report.add(
        "scaling",
        "database path healed: back in rotation (context)",
        f"{lost['back_up_s']:.2f} s after the path healed",
        None,
    )
    same = redis["web_masters_same"] and redis["web_workers_same"] and redis["rq_workers_same"]
    report.add(
        "scaling",
        "Redis restarted (append-only): nobody restarts, no job lost",
        f"{redis['jobs_lost']} of {redis['jobs_accepted']} jobs lost ({redis['jobs_finished']} finished, "
        f"{redis['jobs_stranded']} kept in rq's intermediate queue for its maintenance); "
        f"processes {'the same' if same else 'RESTARTED'}; "
        f"outage {redis['outage_s']:.2f} s, answers from the stop {redis['load_from_the_stop']['statuses']}",
        redis["jobs_lost"] == 0 and same,
    )
    report.tables["scaling: rolling restart, one replica after another"] = [
        ["replica", "SIGTERM to exit", "start to serving", "SIGTERM to UP in HAProxy"],
        *[
            [step["replica"], f"{step['stop_s']:.2f} s", f"{step['start_s']:.2f} s", f"{step['until_up_s']:.2f} s"]
            for step in rolling["steps"]
        ],
    ]


# --- the connection budget --------------------------------------------------------------------


def budget(report: Report, requests: int) -> None:
    say(f"\n== budget: {REPLICAS} replicas, {requests:,} requests each way, straight and through PgBouncer")
    cluster = PostgresCluster().start()
    bouncer = PgBouncer(cluster.port, pool_size=POOL_SIZE)
    redis = RedisServer().start()
    try:
        bouncer.start()
        with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
        direct_url = f"postgres://postgres@127.0.0.1:{cluster.port}/{DATABASE}"
        direct = project_env(DATABASE_URL=direct_url, REDIS_URL=redis.url, WEB_CONCURRENCY=WEB_CONCURRENCY)
        for command in (("migrate", "--no-input"), ("collectstatic", "--noinput", "-v0")):
            done = run_manage(*command, env=direct, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"{command[0]} failed:\n{done.stderr}")
        session = staff_session(direct)
        pooled = {**direct, "DATABASE_URL": bouncer.url(DATABASE), "DATABASE_POOLER": "pgbouncer"}
        results = {}
        for mode, env in (("straight to PostgreSQL", direct), ("through PgBouncer", pooled)):
            results[mode] = _peak(cluster.url, env, session, requests)
            say(f"  {mode}: {results[mode]}")
    finally:
        bouncer.destroy()
        redis.stop()
        cluster.destroy()
    workers = int(WEB_CONCURRENCY)
    formula = REPLICAS * workers * (THREADS + 1 + 1)
    report.data["budget"] = {"results": results, "formula_max": formula, "pool_size": POOL_SIZE}
    straight, pooled_run = results["straight to PostgreSQL"], results["through PgBouncer"]
    report.add(
        "budget",
        f"straight to PostgreSQL: backends <= R x W x (T + P + S) = {REPLICAS} x {workers} x (4 + 1 + 1) = {formula}",
        f"peak {straight['peak_backends']} backends; answers {straight['load']['statuses']}",
        straight["peak_backends"] <= formula and straight["load"]["statuses"] == {"200": requests},
    )
    report.add(
        "budget",
        f"through PgBouncer (transaction mode): backends <= its pool ({POOL_SIZE})",
        f"peak {pooled_run['peak_backends']} backends for {pooled_run['clients']} client connections; "
        f"answers {pooled_run['load']['statuses']}",
        pooled_run["peak_backends"] <= POOL_SIZE and pooled_run["load"]["statuses"] == {"200": requests},
    )
    limits = {
        "straight to PostgreSQL": f"{formula} (the formula)",
        "through PgBouncer": f"{POOL_SIZE} (default_pool_size)",
    }
    report.tables["budget: the most PostgreSQL backends under the same load"] = [
        ["replicas", "mode", "requests", "answers", "peak backends", "limit"],
        *[
            [
                str(REPLICAS),
                mode,
                f"{requests:,}",
                _statuses(run["load"]["statuses"]),
                str(run["peak_backends"]),
                limits[mode],
            ]
            for mode, run in results.items()
        ],
    ]


def _peak(server_url: str, env: dict[str, str], session: str, requests: int) -> dict[str, Any]:
    servers = [Server(env) for _ in range(REPLICAS)]
    try:
        for server in servers:
            server.start(wait=120)
        mix = [request for server in servers for request in ordinary_requests(session, server.port)]
        with PeakBackends(server_url, DATABASE) as peak:
            samples = Load(servers[0].port, mix, connections=CONNECTIONS, total=requests).start().wait(600)
        clients = _clients(env)
    finally:
        for server in servers:
            server.stop()
    return {"load": summary(samples), "peak_backends": peak.peak, "samples": peak.samples, "clients": clients}


def _clients(env: dict[str, str]) -> int | str:
    """PgBouncer's client connections for the app's database (its admin console), if pooled."""
    if env.get("DATABASE_POOLER") != "pgbouncer":
        return "-"
    port = int(env["DATABASE_URL"].rsplit(":", 1)[1].split("/")[0])
    with psycopg.connect(f"postgres://postgres@127.0.0.1:{port}/pgbouncer", autocommit=True) as connection:
        cursor = psycopg.ClientCursor(connection)
        cursor.execute("SHOW CLIENTS")
        names = [column.name for column in cursor.description or ()]
        return sum(1 for row in cursor.fetchall() if dict(zip(names, row, strict=True))["database"] == DATABASE)


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{status}: {count:,}" for status, count in statuses.items())


# --- the worker's liveness probe --------------------------------------------------------------


def worker_probe(report: Report, runs: int) -> None:
    say(f"\n== worker probe: manage.py worker_alive x {runs}, next to a live worker")
    redis = RedisServer().start()
    env = project_env(REDIS_URL=redis.url)
    worker = RqWorker(env, "bench-probe").start()
    walls, cpus, memory = [], [], []
    try:
        deadline = time.monotonic() + 60
        while run_manage("worker_alive", env=env).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker never registered:\n{worker.output()}")
            time.sleep(0.5)
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            done = subprocess.run(
                [PYTHON, "manage.py", "worker_alive"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            walls.append(time.monotonic() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
            memory.append(after.ru_maxrss / 1024)  # the largest child so far, in MiB
            if done.returncode != 0:
                raise RuntimeError(f"worker_alive said no:\n{done.stdout}{done.stderr}")
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)
        redis.stop()
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    period = 60  # deploy/k8s/base/worker-deployment.yaml
    report.data["worker_probe"] = {"wall_s": walls, "cpu_s": cpus, "max_rss_mib": max(memory)}
    report.add(
        "worker probe",
        "one `manage.py worker_alive` (liveness every 60 s) (context)",
        f"{wall:.2f} s wall, {cpu:.2f} s CPU (median of {runs}); up to {max(memory):.0f} MiB while it runs; "
        f"{cpu / period * 100:.1f} % of a core at one probe a minute",
        None,
    )
    report.tables["worker probe: the cost of one liveness probe"] = [
        ["runs", "wall (median)", "CPU (median)", "memory (largest)", "share of a core at one probe a minute"],
        [str(runs), f"{wall:.2f} s", f"{cpu:.2f} s", f"{max(memory):.0f} MiB", f"{cpu / period * 100:.1f} %"],
    ]
