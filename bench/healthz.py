"""Benchmarks for the health path and a load/fault soak (issue 7). Run with ``make bench``.

Everything runs side by side in one run on this machine, because on a small shared machine
absolute numbers mean little and ratios measured in the same run mean a lot:

- throughput: the project's real gunicorn (production settings plus one bench-only probe,
  ``WEB_CONCURRENCY=2``), wrk interleaved over rounds (A B C A B C ...) on ``/livez`` (the
  floor: Django + gunicorn, no I/O), ``/bench/limit`` (one ``SELECT 1`` and one ``PING``,
  nothing else: the near-physical limit) and ``/healthz``; requests/s, p50/p99 and the
  median over rounds of the ratios ``/healthz`` : limit and ``/healthz`` : floor.
- churn: new PostgreSQL connections (``pg_stat_database.sessions``) per 1,000 ``/healthz``
  after warm-up.
- faults: Redis and PostgreSQL each refused, black-holed and slow (replies held 5 s by a
  proxy): how long ``/healthz`` and ``check_services`` take to answer, and what they answer.
- worker: enqueue-to-finish latency and jobs/s of a no-op job through ``manage.py rqworker``
  against plain ``rq worker``, alternating, on the same (throwaway) Redis.
- soak: 60 s of ``/healthz`` at 32 connections while a throwaway Redis and a throwaway
  PostgreSQL are each restarted once: non-503 5xx, how long 503s lasted, worker PIDs.
- balance, probe-port, slow-clients (``bench/serving.py``, issues 17, 13 and 15): how the load
  spreads over the workers at 2 to 64 persistent connections, against the settings weighed and
  not chosen; new clients beside idle keep-alive ones; the probe port while every request thread
  is held; slow and silent clients against gunicorn alone and through nginx.
- scaling: three replicas and two workers behind HAProxy, PgBouncer's pool against the
  connection budget, the worker's liveness probe (``bench/scaling.py``; needs ``haproxy`` and
  ``pgbouncer``).
- metrics (``bench/metrics.py``, issue 14): a trivial view through the full middleware with
  ``/metrics`` off, on, and on while scraped every second, interleaved rounds; docs/metrics.md
  shows the run saved in ``docs/measurements/metrics.json``.

The shared PostgreSQL and Redis are only used, never broken: a database of our own (``bench``,
created if missing) and Redis DB 7 (``BENCH_DATABASE`` and ``BENCH_REDIS_URL`` move them).
Everything the script breaks is a throwaway server it started itself on a free port
(redis-server, an initdb cluster, black holes, a slow proxy).
Needs ``wrk`` (Debian: ``apt-get install wrk``), ``redis-server`` and PostgreSQL's server
binaries (initdb, pg_ctl).

Options: ``--quick`` (short rounds, for development), ``--only throughput,faults``,
``--rounds``, ``--seconds``, ``--[no-]alternatives``, ``--json PATH`` (``make bench
BENCH_ARGS="--quick"``). The default run takes about 18 minutes (the serving sections 11 of
them); the exit status is 1 when a target is missed. docs/performance.md shows the serving
sections of the run saved in ``docs/measurements/serving.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402
from rq.job import JobStatus  # noqa: E402

from apps.common.probe_paths import HEALTHZ, LIVEZ  # noqa: E402
from bench import loads, scaling, serving  # noqa: E402
from bench import metrics as metrics_bench  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH_DB,
    BENCH_DB_URL,
    SHARED_PG,
    SHARED_REDIS_DB,
    SHARED_REDIS_PORT,
    SHARED_REDIS_URL,
    TOKEN,
    WEB_CONCURRENCY,
    Report,
    app_env,
    context_switches,
    cpu_seconds,
    fmt_ms,
    fmt_s,
    gunicorn,
    say,
    workers_of,
)
from bench.paths import LIMIT_PATH  # noqa: E402
from harness.processes import free_port  # noqa: E402
from harness.project import BIN, PYTHON  # noqa: E402
from harness.servers import NGINX, BlackHole, DelayProxy, PostgresCluster, RedisServer, postgres_bin  # noqa: E402

HEALTHZ_PATH, LIVEZ_PATH = "/" + HEALTHZ, "/" + LIVEZ
SECTIONS = (
    "throughput",
    "churn",
    "faults",
    "worker",
    "soak",
    "balance",
    "probe-port",
    "slow-clients",
    "scaling",
    "metrics",
)
HEALTHCHECK_TIMEOUT = 1.0  # the contract's default, used unchanged
FAULT_BUDGET = HEALTHCHECK_TIMEOUT + 0.25
SLOW_DELAY = 5.0
WORKER_ARGS = ("default", "--worker-ttl", "30")  # as `make worker`
# Targets from issue 7; never loosened here.
TARGET_RPS_VS_LIMIT = 0.85
TARGET_P99_VS_LIMIT = 1.3
TARGET_WORKER_P50 = 1.2
TARGET_RECOVERY_S = 2.0


@dataclass
class Profile:
    rounds: int = 15
    seconds: float = 4.0
    warmup_seconds: float = 3.0
    connections: int = 8
    wrk_threads: int = 1
    fault_samples: int = 6
    fault_burst: int = 16
    command_runs: int = 2
    worker_rounds: int = 5
    latency_jobs: int = 60
    burst_jobs: int = 150
    soak_seconds: float = 60.0
    soak_connections: int = 32
    outage_seconds: float = 3.0
    serving: serving.ServingProfile = field(default_factory=serving.ServingProfile)


QUICK = Profile(
    rounds=3,
    seconds=3.0,
    warmup_seconds=1.0,
    fault_samples=3,
    fault_burst=8,
    command_runs=1,
    worker_rounds=2,
    latency_jobs=15,
    burst_jobs=40,
    soak_seconds=20.0,
    serving=serving.ServingProfile.quick(),
)


class SharedPostgres:
    """Read-only statistics from the shared PostgreSQL, through the ``postgres`` database."""

    def __init__(self) -> None:
        self.connection = psycopg.connect(SHARED_PG, autocommit=True, connect_timeout=5)

    def ensure_database(self, name: str) -> None:
        found = self.connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not found:
            self.connection.execute(f'CREATE DATABASE "{name}"')

    def sessions(self, database: str) -> int:
        """Sessions ever established to ``database`` (PostgreSQL 14+)."""
        self.connection.execute("SELECT pg_stat_clear_snapshot()")
        row = self.connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
        return int(row[0]) if row else 0

    def backends(self, database: str) -> set[int]:
        """PIDs of the client backends connected to ``database`` now."""
        rows = self.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'", (database,)
        ).fetchall()
        return {int(row[0]) for row in rows}

    def close(self) -> None:
        self.connection.close()


# --- throughput ---------------------------------------------------------------------------------

TARGETS = {"floor": LIVEZ_PATH, "limit": "/" + LIMIT_PATH, "healthz": HEALTHZ_PATH}


def section_throughput(profile: Profile, report: Report) -> None:
    say(
        f"\n== throughput: {profile.rounds} rounds x {len(TARGETS)} targets x {profile.seconds:g} s, "
        f"wrk -c{profile.connections} -t{profile.wrk_threads}, gunicorn gthread x{WEB_CONCURRENCY} workers"
    )
    with gunicorn(app_env(BENCH_DB_URL, SHARED_REDIS_URL, settings="bench.settings")) as server:
        for path in TARGETS.values():
            reply = loads.timed_get(server.port, path)
            if reply.status != 200:
                raise RuntimeError(f"{path} answered {reply.status}: {reply.body[:200]!r}")
        for path in TARGETS.values():
            loads.run_wrk(server.url + path, profile.warmup_seconds, profile.connections, profile.wrk_threads)

        pids = workers_of(server)
        rounds: list[dict[str, loads.WrkResult]] = []
        cpu: list[dict[str, float]] = []  # gunicorn workers' CPU microseconds per request
        switches: list[dict[str, float]] = []  # their threads' voluntary context switches per request
        for number in range(1, profile.rounds + 1):
            results, costs, waits = {}, {}, {}
            for name, path in TARGETS.items():
                cpu_before, switches_before = cpu_seconds(pids), context_switches(pids)
                result = loads.run_wrk(server.url + path, profile.seconds, profile.connections, profile.wrk_threads)
                costs[name] = (cpu_seconds(pids) - cpu_before) / max(1, result.requests) * 1e6
                waits[name] = (context_switches(pids) - switches_before) / max(1, result.requests)
                results[name] = result
                say(
                    f"  round {number} {name:8} {result.rps:8.0f} req/s  p50 {fmt_ms(result.p50_ms):>9}  "
                    f"p99 {fmt_ms(result.p99_ms):>9}  cpu {costs[name]:5.0f} us/req  "
                    f"{waits[name]:4.1f} switches/req  non-2xx {result.non_2xx}  socket errors {result.lost}"
                )
            rounds.append(results)
            cpu.append(costs)
            switches.append(waits)

    def per_round(func: Callable[[dict[str, loads.WrkResult]], float]) -> list[float]:
        return [func(results) for results in rounds]

    table = [
        [
            "target",
            "path",
            "requests/s",
            "p50",
            "p99",
            "CPU per request",
            "switches per request",
            "non-2xx",
            "socket errors",
        ]
    ]
    summary: dict[str, Any] = {}
    for name, path in TARGETS.items():
        totals = loads.summary([r[name] for r in rounds])
        cpu_us = loads.median([costs[name] for costs in cpu])
        per_request_switches = loads.median([waits[name] for waits in switches])
        summary[name] = {**totals, "cpu_us_per_request": cpu_us, "switches_per_request": per_request_switches}
        row = [name, f"`{path}`", f"{totals['rps']:,.0f}", fmt_ms(totals["p50_ms"]), fmt_ms(totals["p99_ms"])]
        row += [f"{cpu_us:,.0f} us", f"{per_request_switches:.1f}", f"{totals['non_2xx']:.0f}"]
        row += [f"{totals['socket_errors']:.0f}"]
        table.append(row)
    report.tables["throughput (medians over rounds)"] = table

    ratios = {
        "healthz_vs_limit_rps": per_round(lambda r: r["healthz"].rps / r["limit"].rps),
        "healthz_vs_limit_p99": per_round(lambda r: r["healthz"].p99_ms / r["limit"].p99_ms),
        "healthz_vs_floor_rps": per_round(lambda r: r["healthz"].rps / r["floor"].rps),
        "limit_vs_floor_rps": per_round(lambda r: r["limit"].rps / r["floor"].rps),
        "healthz_vs_limit_cpu": [costs["healthz"] / costs["limit"] for costs in cpu],
    }
    medians = {key: loads.median(values) for key, values in ratios.items()}
    report.data["throughput"] = {
        "rounds": [{name: asdict(result) | {"buckets": {}} for name, result in r.items()} for r in rounds],
        "cpu_us_per_request": cpu,
        "switches_per_request": switches,
        "summary": summary,
        "ratios": ratios,
        "median_ratios": medians,
    }

    def spread(key: str) -> str:
        values = ratios[key]
        return f"(rounds: {min(values):.2f}-{max(values):.2f})"

    errors = sum(s["non_2xx"] + s["socket_errors"] for s in summary.values())
    report.add(
        "throughput",
        f"`/healthz` req/s >= {TARGET_RPS_VS_LIMIT} x limit",
        f"{medians['healthz_vs_limit_rps']:.2f} x {spread('healthz_vs_limit_rps')}",
        medians["healthz_vs_limit_rps"] >= TARGET_RPS_VS_LIMIT,
    )
    report.add(
        "throughput",
        f"`/healthz` p99 <= {TARGET_P99_VS_LIMIT} x limit p99",
        f"{medians['healthz_vs_limit_p99']:.2f} x {spread('healthz_vs_limit_p99')}",
        medians["healthz_vs_limit_p99"] <= TARGET_P99_VS_LIMIT,
    )
    report.add(
        "throughput",
        "`/healthz` : floor req/s (context)",
        f"{medians['healthz_vs_floor_rps']:.2f} x; limit : floor {medians['limit_vs_floor_rps']:.2f} x",
        None,
    )
    report.add(
        "throughput",
        "worker CPU per request, `/healthz` : limit (context)",
        f"{medians['healthz_vs_limit_cpu']:.2f} x {spread('healthz_vs_limit_cpu')}",
        None,
    )
    report.add("throughput", "every answer 200, no socket errors", f"{errors} other", errors == 0)


# --- connection churn ---------------------------------------------------------------------------


def section_churn(profile: Profile, report: Report, postgres: SharedPostgres) -> None:
    say("\n== churn: new PostgreSQL connections per 1,000 /healthz after warm-up")
    workers = int(WEB_CONCURRENCY)
    with gunicorn(app_env(BENCH_DB_URL, SHARED_REDIS_URL)) as server:
        # Warm-up: fresh connections until every gunicorn worker's probe thread holds its
        # persistent connection (one backend per worker).
        deadline = time.monotonic() + 30
        while len(postgres.backends(BENCH_DB)) < workers and time.monotonic() < deadline:
            loads.concurrent_gets(server.port, HEALTHZ_PATH, 40, 8)
        loads.concurrent_gets(server.port, HEALTHZ_PATH, 200, 8)
        time.sleep(2.5)  # a backend reports its session to pg_stat_database within ~1 s of going idle
        before_sessions = postgres.sessions(BENCH_DB)
        before_backends = postgres.backends(BENCH_DB)
        replies = loads.concurrent_gets(server.port, HEALTHZ_PATH, 1000, 4)
        time.sleep(2.5)
        after_sessions = postgres.sessions(BENCH_DB)
        after_backends = postgres.backends(BENCH_DB)
    statuses: dict[int, int] = {}
    for reply in replies:
        statuses[reply.status] = statuses.get(reply.status, 0) + 1
    new_sessions = after_sessions - before_sessions
    new_backends = len(after_backends - before_backends)
    new = max(new_sessions, new_backends)
    report.data["churn"] = {
        "requests": len(replies),
        "statuses": statuses,
        "sessions_before": before_sessions,
        "sessions_after": after_sessions,
        "backends_before": sorted(before_backends),
        "backends_after": sorted(after_backends),
    }
    report.add(
        "churn",
        "0 new PostgreSQL connections per 1,000 `/healthz`",
        f"{new} (sessions counter +{new_sessions}; {len(after_backends)} backends, {new_backends} new; "
        f"answers {statuses})",
        new == 0 and statuses == {200: len(replies)},
    )


# --- faults -------------------------------------------------------------------------------------

FAULTS = [(dependency, kind) for dependency in ("redis", "db") for kind in ("refused", "black hole", "slow")]


@contextlib.contextmanager
def fault(dependency: str, kind: str) -> Iterator[tuple[str, DelayProxy | None]]:
    """A URL for ``dependency`` that misbehaves as ``kind``; for "slow", the proxy (delay off)."""
    upstream = SHARED_REDIS_PORT if dependency == "redis" else 5432
    hole = proxy = None
    if kind == "refused":
        port = free_port()  # nothing listens there
    elif kind == "black hole":
        hole = BlackHole()
        port = hole.port
    else:
        proxy = DelayProxy(upstream, delay=0.0)
        port = proxy.port
    url = (
        f"redis://127.0.0.1:{port}/{SHARED_REDIS_DB}"
        if dependency == "redis"
        else f"postgres://postgres@127.0.0.1:{port}/{BENCH_DB}"
    )
    try:
        yield url, proxy
    finally:
        if hole:
            hole.close()
        if proxy:
            proxy.close()


def run_check_services(env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "timed_check_services.py"), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    timing: dict[str, Any] = {}
    answer: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_TIMING "):
            timing = json.loads(line.removeprefix("BENCH_TIMING "))
        elif line.startswith("{"):
            answer = json.loads(line)
    if not timing:
        raise RuntimeError(f"check_services printed no timing (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return {"wall_s": wall, "exit": done.returncode, "answer": answer, **timing}


def describe(body: dict[str, Any]) -> str:
    """``redis: timeout`` style summary of a verbose body's failing checks."""
    checks = body.get("checks", {})
    failing = [f"{name}: {detail.get('error')}" for name, detail in checks.items() if detail.get("status") != "ok"]
    return ", ".join(failing) or "all ok"


def section_faults(profile: Profile, report: Report) -> None:
    say(f"\n== faults: answer times against HEALTHCHECK_TIMEOUT {HEALTHCHECK_TIMEOUT:g} s + 0.25 s")
    table = [
        [
            "dependency",
            "fault",
            "`/healthz` answer",
            "`/healthz` time (median / max)",
            "`check_services`",
            "answer time (max)",
            "process (start-up)",
        ]
    ]
    rows: list[dict[str, Any]] = []
    for dependency, kind in FAULTS:
        label = f"{'PostgreSQL' if dependency == 'db' else 'Redis'} {kind}"
        with fault(dependency, kind) as (url, proxy):
            env = app_env(
                url if dependency == "db" else BENCH_DB_URL, url if dependency == "redis" else SHARED_REDIS_URL
            )
            with gunicorn(env) as server:
                if proxy is not None:
                    # Healthy first, so the app holds live connections; then the replies slow down.
                    warm = [loads.timed_get(server.port, HEALTHZ_PATH) for _ in range(4)]
                    if any(reply.status != 200 for reply in warm):
                        raise RuntimeError(f"{label}: not healthy through the proxy before the fault")
                    proxy.delay = SLOW_DELAY
                samples = [loads.timed_get(server.port, HEALTHZ_PATH) for _ in range(profile.fault_samples)]
                samples += loads.concurrent_gets(server.port, HEALTHZ_PATH, profile.fault_burst, profile.fault_burst)
                verbose = loads.timed_get(server.port, "/healthz?verbose=1", {"Authorization": f"Bearer {TOKEN}"})
            commands = [run_check_services(env) for _ in range(profile.command_runs)]

        times = [sample.seconds for sample in samples]
        statuses = sorted({sample.status for sample in samples})
        body = json.loads(verbose.body)
        http_answer = f"{'/'.join(map(str, statuses))} {describe(body)}"
        command_answer = ", ".join(sorted({f"exit {c['exit']} {describe(c['answer'])}" for c in commands}))
        answer_max = max(c["answer_s"] for c in commands)
        wall_max = max(c["wall_s"] for c in commands)
        startup_max = max(c["startup_s"] for c in commands)
        rows.append(
            {
                "fault": label,
                "http_statuses": statuses,
                "http_times_s": times,
                "http_verbose": body,
                "commands": commands,
            }
        )
        table.append(
            [
                "PostgreSQL" if dependency == "db" else "Redis",
                kind if kind != "slow" else f"slow ({SLOW_DELAY:g} s replies)",
                http_answer,
                f"{fmt_s(loads.median(times))} / {fmt_s(max(times))}",
                command_answer,
                fmt_s(answer_max),
                f"{fmt_s(wall_max)} ({fmt_s(startup_max)})",
            ]
        )
        expected_failing = dependency
        right = statuses == [503] and body.get(expected_failing) == "error"
        report.add(
            "faults",
            f"`/healthz` <= {FAULT_BUDGET:g} s",
            f"{label}: max {fmt_s(max(times))} over {len(times)}; {http_answer}",
            max(times) <= FAULT_BUDGET and right,
        )
        command_right = all(c["exit"] == 1 and c["answer"].get(expected_failing) == "error" for c in commands)
        report.add(
            "faults",
            f"`check_services` <= {FAULT_BUDGET:g} s after start-up",
            f"{label}: max {fmt_s(answer_max)}; {command_answer}; process {fmt_s(wall_max)}",
            answer_max <= FAULT_BUDGET and command_right,
        )
    report.tables["faults"] = table
    report.data["faults"] = rows


# --- worker -------------------------------------------------------------------------------------


def start_worker(kind: str, redis_url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if kind == "rqworker":
        command = [PYTHON, "manage.py", "rqworker", *WORKER_ARGS]
    else:
        command = [str(BIN / "rq"), "worker", "--url", redis_url, "--path", str(ROOT), *WORKER_ARGS]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def measure_worker(kind: str, profile: Profile, redis_url: str, env: dict[str, str]) -> dict[str, Any]:
    connection = Redis.from_url(redis_url)
    queue = Queue("default", connection=connection)
    queue.empty()
    process = start_worker(kind, redis_url, env)
    try:
        deadline = time.monotonic() + 60
        while Worker.count(connection=connection, queue=queue) == 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not register (exit {process.returncode})")
            time.sleep(0.05)

        def round_trip() -> float:
            started = time.perf_counter()
            job = queue.enqueue("bench.jobs.noop", result_ttl=60)
            result = job.latest_result(timeout=30)
            elapsed = time.perf_counter() - started
            if result is None or result.type != result.Type.SUCCESSFUL:
                raise RuntimeError(f"{kind}: job {job.id} did not succeed: {result and result.exc_string}")
            return elapsed

        for _ in range(3):  # warm-up
            round_trip()
        before = process_stat(process.pid)
        latencies = [round_trip() * 1000 for _ in range(profile.latency_jobs)]
        after = process_stat(process.pid)

        started = time.perf_counter()
        jobs = queue.enqueue_many(
            [Queue.prepare_data("bench.jobs.noop", result_ttl=60) for _ in range(profile.burst_jobs)]
        )
        last = jobs[-1].latest_result(timeout=120)
        elapsed = time.perf_counter() - started
        if last is None or any(job.get_status(refresh=True) != JobStatus.FINISHED for job in jobs):
            raise RuntimeError(f"{kind}: not every burst job finished")
    finally:
        stop_process(process)
        connection.close()
    count = profile.latency_jobs
    return {
        "p50_ms": loads.percentile(latencies, 50),
        "p99_ms": loads.percentile(latencies, 99),
        "jobs_per_s": profile.burst_jobs / elapsed,
        # Where a job's time goes: the worker process itself, and its forked work horses.
        "worker_cpu_ms": (after["cpu"] - before["cpu"]) / count * 1000,
        "horse_cpu_ms": (after["children_cpu"] - before["children_cpu"]) / count * 1000,
        "horse_page_faults": (after["children_faults"] - before["children_faults"]) / count,
        "rss_mb": after["rss_mb"],
        "latencies_ms": latencies,
    }


def process_stat(pid: int) -> dict[str, float]:
    """CPU seconds and minor page faults of ``pid`` and of its waited-for children, and its RSS."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    rss_pages = int(fields[21])
    return {
        "cpu": (int(fields[11]) + int(fields[12])) / ticks,
        "children_cpu": (int(fields[13]) + int(fields[14])) / ticks,
        "children_faults": int(fields[8]),
        "rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
    }


def section_worker(profile: Profile, report: Report) -> None:
    say(f"\n== worker: no-op job, manage.py rqworker vs plain rq worker, {profile.worker_rounds} rounds each")
    redis = RedisServer().start()
    try:
        env = app_env(BENCH_DB_URL, redis.url)
        rounds: list[dict[str, dict[str, Any]]] = []
        for number in range(1, profile.worker_rounds + 1):
            results = {}
            # A B, B A, A B ...: neither worker always runs first after a quiet spell.
            for kind in ("rqworker", "rq") if number % 2 else ("rq", "rqworker"):
                results[kind] = measure_worker(kind, profile, redis.url, env)
                say(
                    f"  round {number} {kind:9} p50 {fmt_ms(results[kind]['p50_ms']):>9}  "
                    f"p99 {fmt_ms(results[kind]['p99_ms']):>9}  {results[kind]['jobs_per_s']:6.1f} jobs/s"
                )
            rounds.append(results)
    finally:
        redis.stop()

    table = [
        [
            "worker",
            "enqueue-to-finish p50",
            "p99",
            "jobs/s",
            "worker RSS",
            "worker CPU per job",
            "work-horse CPU per job",
            "work-horse page faults per job",
        ]
    ]
    summary = {}
    for kind, label in (("rqworker", "`manage.py rqworker`"), ("rq", "plain `rq worker`")):
        values = {key: loads.median([r[kind][key] for r in rounds]) for key in rounds[0][kind] if key != "latencies_ms"}
        summary[kind] = values
        table.append(
            [
                label,
                fmt_ms(values["p50_ms"]),
                fmt_ms(values["p99_ms"]),
                f"{values['jobs_per_s']:.1f}",
                f"{values['rss_mb']:.0f} MB",
                fmt_ms(values["worker_cpu_ms"]),
                fmt_ms(values["horse_cpu_ms"]),
                f"{values['horse_page_faults']:,.0f}",
            ]
        )
    report.tables["worker (medians over rounds)"] = table
    p50_ratio = loads.median([r["rqworker"]["p50_ms"] / r["rq"]["p50_ms"] for r in rounds])
    rate_ratio = loads.median([r["rqworker"]["jobs_per_s"] / r["rq"]["jobs_per_s"] for r in rounds])
    report.data["worker"] = {"rounds": rounds, "summary": summary, "p50_ratio": p50_ratio, "rate_ratio": rate_ratio}
    report.add(
        "worker",
        f"enqueue-to-finish p50 <= {TARGET_WORKER_P50} x plain rq",
        f"{p50_ratio:.2f} x ({fmt_ms(summary['rqworker']['p50_ms'])} vs {fmt_ms(summary['rq']['p50_ms'])})",
        p50_ratio <= TARGET_WORKER_P50,
    )
    report.add(
        "worker",
        "jobs/s vs plain rq (context)",
        f"{rate_ratio:.2f} x ({summary['rqworker']['jobs_per_s']:.1f} vs {summary['rq']['jobs_per_s']:.1f} jobs/s)",
        None,
    )


# --- soak ---------------------------------------------------------------------------------------


@dataclass
class Outage:
    name: str
    down_at: float
    up_at: float


def section_soak(profile: Profile, report: Report) -> None:
    seconds = profile.soak_seconds
    say(
        f"\n== soak: {seconds:g} s of /healthz at {profile.soak_connections} connections; "
        "a throwaway Redis and PostgreSQL each restarted once"
    )
    if postgres_bin() is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    redis = RedisServer().start()
    cluster = PostgresCluster()
    try:
        cluster.start()
        env = app_env(cluster.url, redis.url)
        with gunicorn(env) as server:
            for _ in range(20):
                if loads.timed_get(server.port, HEALTHZ_PATH).status == 200:
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError("the soak server never became healthy")
            assert server.process is not None
            pids_before = workers_of(server)
            load = loads.WrkProcess(server.url + HEALTHZ_PATH, seconds, profile.soak_connections, 2)
            started = time.time()
            outages: list[Outage] = []
            try:
                for name, at, stop, start in (
                    ("Redis", 0.25, redis.stop, redis.start),
                    ("PostgreSQL", 0.58, cluster.stop, cluster.start),
                ):
                    time.sleep(max(0.0, started + at * seconds - time.time()))
                    down_at = time.time()
                    stop()
                    time.sleep(profile.outage_seconds)
                    start()
                    outages.append(Outage(name, down_at, time.time()))
                    say(f"  {name} restarted: down {outages[-1].up_at - down_at:.2f} s")
                result = load.result()
            finally:
                load.kill()
            pids_after = workers_of(server)
            master_alive = server.process.poll() is None
            log = server.output()
    finally:
        redis.stop()
        cluster.destroy()

    non_503 = {status: count for status, count in result.statuses.items() if status >= 500 and status != 503}
    non_503_count = sum(non_503.values())
    others = {status: count for status, count in result.statuses.items() if status not in (200, 503)}
    rows = []
    table = [["restart", "outage", "503s", "first 503 after the stop", "503 period", "503s after the restart"]]
    recovery_ok = True
    windows = [*outages[1:], None]
    covered: set[tuple[int, int]] = set()
    for outage, following in zip(outages, windows, strict=True):
        window_end = following.down_at if following else math.inf
        hits = sorted(
            (bucket, count)
            for (status, bucket), count in result.buckets.items()
            if status == 503 and outage.down_at - 0.05 <= bucket / 20 < window_end
        )
        covered.update((503, bucket) for bucket, _ in hits)
        count = sum(c for _, c in hits)
        if hits:
            first = max(0.0, hits[0][0] / 20 - outage.down_at)
            period = (hits[-1][0] + 1 - hits[0][0]) / 20
            tail = max(0.0, (hits[-1][0] + 1) / 20 - outage.up_at)
        else:
            first, period, tail = math.nan, 0.0, 0.0
        recovery_ok &= tail <= TARGET_RECOVERY_S
        rows.append(
            {
                "restart": outage.name,
                "outage_s": outage.up_at - outage.down_at,
                "503s": count,
                "first_503_s": first,
                "period_s": period,
                "tail_s": tail,
            }
        )
        table.append(
            [
                outage.name,
                fmt_s(outage.up_at - outage.down_at),
                f"{count:,}",
                "-" if math.isnan(first) else f"{first:.2f} s",
                fmt_s(period),
                f"{tail:.2f} s",
            ]
        )
    stray_503 = sum(
        count for (status, bucket), count in result.buckets.items() if status == 503 and (status, bucket) not in covered
    )
    restarted = pids_before != pids_after or not master_alive
    five_hundreds = len(re.findall(r'"status": 500', log))
    report.tables["soak (times in 50 ms buckets; outage = stop until the restarted server accepts connections)"] = table
    report.data["soak"] = {
        "requests": result.requests,
        "seconds": result.seconds,
        "statuses": result.statuses,
        "socket_errors": result.socket_errors,
        "outages": rows,
        "stray_503": stray_503,
        "pids_before": sorted(pids_before),
        "pids_after": sorted(pids_after),
        "master_alive": master_alive,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
    }
    report.add(
        "soak",
        "0 non-503 5xx",
        f"{non_503_count} of {result.requests:,} requests ({dict(sorted(result.statuses.items()))}; "
        f"other statuses {others or 'none'}; socket errors {result.lost}; 500s in the log {five_hundreds})",
        non_503_count == 0 and result.lost == 0,
    )
    report.add(
        "soak",
        f"503s end <= {TARGET_RECOVERY_S:g} s after each restart",
        "; ".join(f"{r['restart']} {r['tail_s']:.2f} s ({r['503s']:,} 503s)" for r in rows)
        + f"; 503s outside the outages: {stray_503}",
        recovery_ok and stray_503 == 0,
    )
    report.add(
        "soak",
        "gunicorn workers never restarted",
        f"worker PIDs before {sorted(pids_before)}, after {sorted(pids_after)}; "
        f"master {'alive' if master_alive else 'gone'}",
        not restarted,
    )


# --- metrics ------------------------------------------------------------------------------------


def section_metrics(profile: Profile, report: Report) -> None:
    def env(token: str | None) -> dict[str, str]:
        # The trivial view must answer itself, not redirect to HTTPS; only METRICS_TOKEN differs.
        return {
            **app_env(BENCH_DB_URL, SHARED_REDIS_URL, settings="bench.settings"),
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "METRICS_TOKEN": token or "",
        }

    metrics_bench.section_metrics(report, env, cpu_seconds, profile.rounds, profile.seconds, profile.warmup_seconds)


# --- report -------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"

    def version(*command: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        return "?"

    import django
    import gunicorn as gunicorn_package
    import redis as redis_package
    import rq

    pg_bin = postgres_bin()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn_package.__version__,
        "psycopg": psycopg.__version__,
        "redis_py": redis_package.__version__,
        "rq": rq.__version__,
        "wrk": version(loads.find_wrk() or "wrk", "-v"),
        "redis_server": version("redis-server", "--version"),
        "postgres": version(str(pg_bin / "postgres"), "--version") if pg_bin else "?",
        "loadavg_start": os.getloadavg(),
    }


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def print_report(report: Report, info: dict[str, Any], started: dt.datetime, elapsed: float) -> None:
    say("\n" + "=" * 100)
    say(
        f"Run of {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min; "
        f"machine: {info['cpus']} CPUs {info['cpu_model']}, {info['memory']}"
    )
    say(f"load average at start {info['loadavg_start']}, at end {info['loadavg_end']}")
    say("\n### Targets\n")
    verdicts = [
        [row.area, row.target, row.measured, row.verdict.upper() if row.verdict != "info" else "-"]
        for row in report.rows
    ]
    say(markdown_table([["area", "target", "measured", "verdict"], *verdicts]))
    for title, table in report.tables.items():
        say(f"\n### {title}\n")
        say(markdown_table(table))
    misses = [row for row in report.rows if row.verdict == "miss"]
    say(
        f"\n{len(misses)} target(s) missed"
        + (": " + "; ".join(f"{r.area}: {r.target}" for r in misses) if misses else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short rounds and a 20 s soak (development)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections from: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--rounds", type=int, help="throughput rounds")
    parser.add_argument("--seconds", type=float, help="seconds per throughput measurement")
    parser.add_argument("--connections", type=int, help="wrk connections for the throughput rounds")
    parser.add_argument("--soak-seconds", type=float, help="soak duration")
    parser.add_argument(
        "--alternatives",
        action=argparse.BooleanOptionalAction,
        help="balance: also measure the settings that were weighed and not chosen (default: on, off with --quick)",
    )
    parser.add_argument("--json", type=Path, help="where to write all measurements (default: bench/results/)")
    args = parser.parse_args(argv)

    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    profile = QUICK if args.quick else Profile()
    for option, attribute in (
        ("rounds", "rounds"),
        ("seconds", "seconds"),
        ("connections", "connections"),
        ("soak_seconds", "soak_seconds"),
    ):
        if getattr(args, option) is not None:
            setattr(profile, attribute, getattr(args, option))
    if args.alternatives is not None:
        profile.serving.alternatives = args.alternatives

    missing = [
        tool for tool, found in (("wrk", loads.find_wrk()), ("redis-server", shutil.which("redis-server"))) if not found
    ]
    if "scaling" in chosen:
        missing += [tool for tool in ("haproxy", "pgbouncer") if not shutil.which(tool)]
    if missing:
        print(
            f"bench: missing tool(s): {', '.join(missing)} (Debian/Ubuntu: apt-get install {' '.join(missing)})",
            file=sys.stderr,
        )
        return 2
    if {"soak", "scaling"} & set(chosen) and postgres_bin() is None:
        print("bench: the soak needs PostgreSQL's server binaries (initdb, pg_ctl)", file=sys.stderr)
        return 2
    if {"slow-clients"} & set(chosen) and not NGINX.exists():
        print(f"bench: slow-clients needs nginx ({NGINX}; Debian: apt-get install nginx)", file=sys.stderr)
        return 2

    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    info = machine()
    say(f"bench: sections {', '.join(chosen)}; {info['cpus']} CPUs, load average {info['loadavg_start']}")
    report = Report()
    postgres = SharedPostgres()
    try:
        postgres.ensure_database(BENCH_DB)
        for section in SECTIONS:
            if section not in chosen:
                continue
            if section == "throughput":
                section_throughput(profile, report)
            elif section == "churn":
                section_churn(profile, report, postgres)
            elif section == "faults":
                section_faults(profile, report)
            elif section == "worker":
                section_worker(profile, report)
            elif section == "scaling":
                scaling.section(report, quick=args.quick)
            elif section == "metrics":
                section_metrics(profile, report)
            elif section == "soak":
                section_soak(profile, report)
            elif section == "balance":
                serving.section_balance(profile.serving, report)
            elif section == "probe-port":
                serving.section_probe_port(profile.serving, report)
            elif section == "slow-clients":
                serving.section_slow_clients(profile.serving, report)
    finally:
        postgres.close()
    info["loadavg_end"] = os.getloadavg()
    elapsed = time.monotonic() - clock
    print_report(report, info, started, elapsed)

    path = args.json or ROOT / "bench" / "results" / f"healthz-{started:%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": started.isoformat(),
        "command": "make bench" if argv is None and not sys.argv[1:] else " ".join(["bench/healthz.py", *sys.argv[1:]]),
        "profile": asdict(profile),
        "machine": info,
        "elapsed_s": elapsed,
        "rows": [asdict(row) for row in report.rows],
        "tables": report.tables,
        "data": report.data,
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    say(f"\nAll measurements: {path}")
    return 1 if any(row.verdict == "miss" for row in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
