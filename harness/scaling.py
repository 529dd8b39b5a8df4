"""Three replicas and two workers behind HAProxy, and what happens to them: the scaling scenarios.

``Fleet`` starts everything on this machine: a throwaway PostgreSQL cluster (migrated), a
throwaway Redis with append-only persistence (as production runs it), three gunicorn replicas
(each reaching PostgreSQL through a path of its own that can stall), two rq workers, and HAProxy
with ``deploy/haproxy/haproxy.cfg``. Each scenario runs under steady load through HAProxy and
returns what it measured; ``tests/test_scaling.py`` asserts on it and ``make bench`` records it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from apps.common.probe_paths import HEALTHZ
from config.env import VARIABLES
from harness.fleet import Backend, HAProxy, PausableProxy, RqWorker, staff_session
from harness.load import Load, Request, Sample
from harness.processes import child_pids, free_port, wait_until
from harness.project import Server, project_env, run_manage
from harness.servers import PostgresCluster, RedisServer

DATABASE = "app"
REPLICAS = 3
WORKERS = 2
CONNECTIONS = 16  # the load's keep-alive connections to HAProxy
WEB_CONCURRENCY = "2"
# As deploy/haproxy/haproxy.cfg sets them (tests/test_scaling.py checks the file says so).
INTER, FALL, RISE, SLOWSTART, TIMEOUT_CHECK, TIMEOUT_SERVER = 1.0, 2, 2, 5.0, 2.0, 10.0
HEALTHCHECK_TIMEOUT = 1.0  # the contract's default
DEADLINE = HEALTHCHECK_TIMEOUT + 0.25  # /readyz answers within this, whatever the dependencies do
# On SIGTERM: readiness 503 and keep serving for longer than HAProxy takes to notice (fall x
# inter). helper/serving implements it; until it lands the variable is ignored.
DRAIN_SECONDS = "3"
# The probe listener (PROBE_PORT, helper/serving): HAProxy checks there once it exists.
PROBE_LISTENER = "PROBE_PORT" in {variable.name for variable in VARIABLES}
# Redis as production runs it: every write on disk before it is acknowledged.
REDIS_PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass
class Replica:
    name: str
    path: PausableProxy  # this replica's way to PostgreSQL
    server: Server
    probe_port: int | None = None  # PROBE_PORT, where HAProxy checks it

    def worker_pids(self) -> set[int]:
        assert self.server.process is not None
        return child_pids(self.server.process.pid)


@dataclass
class Fleet:
    cluster: PostgresCluster
    redis: RedisServer
    redis_dir: str
    replicas: list[Replica]
    workers: list[RqWorker]
    haproxy: HAProxy
    session: str

    @classmethod
    def start(cls) -> Fleet:
        cluster = PostgresCluster().start()
        redis_dir = tempfile.mkdtemp(prefix="fleet-redis-")
        redis = RedisServer()
        paths: list[PausableProxy] = []
        replicas: list[Replica] = []
        workers: list[RqWorker] = []
        haproxy: HAProxy | None = None
        try:
            redis.start(*REDIS_PERSISTENCE, "--dir", redis_dir)
            with psycopg.connect(cluster.url, autocommit=True, connect_timeout=5) as connection:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')
            direct = _env(cluster.url.rsplit("/", 1)[0] + f"/{DATABASE}", redis.url)
            migrated = run_manage("migrate", "--no-input", env=direct, timeout=300)
            if migrated.returncode != 0:
                raise RuntimeError(f"migrate failed:\n{migrated.stderr}")
            collected = run_manage("collectstatic", "--noinput", "-v0", env=direct, timeout=300)
            if collected.returncode != 0:
                raise RuntimeError(f"collectstatic failed:\n{collected.stderr}")
            session = staff_session(direct)
            for number in range(1, REPLICAS + 1):
                path = PausableProxy(cluster.port)
                paths.append(path)
                env = _env(f"postgres://postgres@127.0.0.1:{path.port}/{DATABASE}", redis.url)
                probe_port = free_port() if PROBE_LISTENER else None
                if probe_port is not None:
                    env["PROBE_PORT"] = str(probe_port)
                replicas.append(Replica(f"web{number}", path, Server(env), probe_port))
            for replica in replicas:
                replica.server.start(wait=120)
            workers = [RqWorker(direct, f"fleet-worker-{n}-{os.getpid()}").start() for n in range(1, WORKERS + 1)]
            haproxy = HAProxy([Backend(r.name, r.server.port, r.probe_port) for r in replicas]).start()
            fleet = cls(cluster, redis, redis_dir, replicas, workers, haproxy, session)
            fleet.wait_all_up(60)
            registry = Redis.from_url(redis.url)
            wait_until(lambda: registry.scard("rq:workers:default") == WORKERS, 60, "both rq workers to register")
            registry.close()
            return fleet
        except BaseException:
            for worker in workers:
                worker.stop()
            for replica in replicas:
                replica.server.stop()
            if haproxy is not None:
                haproxy.destroy()
            for path in paths:
                path.close()
            redis.stop()
            cluster.destroy()
            shutil.rmtree(redis_dir, ignore_errors=True)
            raise

    def stop(self) -> None:
        self.haproxy.destroy()
        for worker in self.workers:
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
        for replica in self.replicas:
            replica.server.stop()
            replica.path.close()
        self.redis.stop()
        self.cluster.destroy()
        shutil.rmtree(self.redis_dir, ignore_errors=True)

    def requests(self) -> list[Request]:
        return ordinary_requests(self.session)

    def load(self) -> Load:
        return Load(self.haproxy.port, self.requests(), connections=CONNECTIONS)

    def wait_all_up(self, timeout: float) -> None:
        wait_until(
            lambda: all(self.haproxy.status(r.name) == "UP" for r in self.replicas),
            timeout,
            "HAProxy to see every replica UP",
            interval=0.05,
        )

    def retries(self) -> dict[str, int]:
        """HAProxy's own counters: retries (wretr) and redispatches (wredis) so far, all servers."""
        rows = self.haproxy.stats().values()
        return {
            "retries": sum(int(row.get("wretr") or 0) for row in rows),
            "redispatches": sum(int(row.get("wredis") or 0) for row in rows),
        }


def ordinary_requests(session: str, port: int | None = None) -> list[Request]:
    """The steady load: probes and ordinary admin pages (a staff user's), three to one.

    ``port``: one replica's, to spread a load over replicas without a load balancer.
    """
    staff = {"Cookie": f"sessionid={session}"}
    healthz = Request("/" + HEALTHZ, port=port)
    index, users = Request("/admin/", staff, port=port), Request("/admin/auth/user/", staff, port=port)
    return [healthz, healthz, healthz, index, healthz, healthz, healthz, users]


def _env(database_url: str, redis_url: str) -> dict[str, str]:
    return project_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WEB_CONCURRENCY=WEB_CONCURRENCY,
        DRAIN_SECONDS=DRAIN_SECONDS,
        HEALTHCHECK_TIMEOUT=str(HEALTHCHECK_TIMEOUT),
    )


def _failures(samples: list[Sample]) -> list[Sample]:
    return [sample for sample in samples if sample.failed]


def _describe(samples: list[Sample]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for sample in samples:
        key = str(sample.status) if sample.status is not None else f"error:{sample.error}"
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "requests": len(samples),
        "statuses": dict(sorted(statuses.items())),
        "failed": len(_failures(samples)),
        "max_seconds": max((sample.seconds for sample in samples), default=0.0),
        "retried_stale_connections": sum(sample.retried for sample in samples),
    }


# --- the scenarios ----------------------------------------------------------------------------


def rolling_restart(fleet: Fleet) -> dict[str, Any]:
    """Every replica in turn: SIGTERM, wait for it to exit, start it again, wait until HAProxy has it UP."""
    fleet.wait_all_up(60)
    before = fleet.retries()
    steps = []
    with fleet.load() as load:
        load.wait_for(lambda samples: len(samples) >= 200, 60)  # steady before the first stop
        started = time.monotonic()
        for replica in fleet.replicas:
            stopping = time.monotonic()
            replica.server.stop()
            stopped = time.monotonic()
            replica.server.start(wait=120)
            serving = time.monotonic()
            fleet.haproxy.wait_status(replica.name, "UP", 60)
            up = time.monotonic()
            steps.append(
                {
                    "replica": replica.name,
                    "stop_s": stopped - stopping,
                    "start_s": serving - stopped,
                    "until_up_s": up - stopping,
                }
            )
        samples = load.stop()
    during = [s for s in samples if s.started >= started]
    return {
        "steps": steps,
        "seconds": time.monotonic() - started,
        "load": _describe(during),
        "failures": [_sample(s) for s in _failures(during)][:20],
        "haproxy": {key: value - before[key] for key, value in fleet.retries().items()},
    }


def database_path_lost(fleet: Fleet, replica_index: int = REPLICAS - 1) -> dict[str, Any]:
    """One replica's way to PostgreSQL stalls (a black hole), then heals."""
    fleet.wait_all_up(60)
    replica = fleet.replicas[replica_index]
    with fleet.load() as load:
        load.wait_for(lambda samples: len(samples) >= 200, 60)
        paused = time.monotonic()
        replica.path.pause()
        try:
            down = fleet.haproxy.wait_status(replica.name, "DOWN", 60)
            # Out of rotation for a while, under load: nothing new reaches it.
            load.wait_for(lambda samples: sum(s.started > down for s in samples) >= 300, 60)
        finally:
            resumed = time.monotonic()
            replica.path.resume()
        up = fleet.haproxy.wait_status(replica.name, "UP", 60)
        # Back in rotation: it answers again, through HAProxy.
        load.wait_for(lambda samples: any(s.server == replica.name and s.started > up for s in samples), 60)
        samples = load.stop(timeout=TIMEOUT_SERVER * 2)
    from_it_after_down = [s for s in samples if s.server == replica.name and down <= s.started < up]
    five_xx_after_down = [s for s in samples if s.server == replica.name and s.started >= down and s.failed]
    before_down = [s for s in samples if paused <= s.started < down]
    return {
        "replica": replica.name,
        "marked_down_s": down - paused,
        # A failing check answers within the deadline on the probe listener. Without one it
        # waits for a request thread, which requests stuck on the database may all hold: then
        # each check ends at HAProxy's `timeout check`.
        "bound_s": FALL * INTER + DEADLINE if replica.probe_port else FALL * (INTER + TIMEOUT_CHECK),
        "probe_listener": replica.probe_port is not None,
        "down_s": resumed - down,
        "back_up_s": up - resumed,
        "load": _describe([s for s in samples if s.started >= paused]),
        "before_down": _describe(before_down),
        "answered_by_it_while_down": len(from_it_after_down),
        "five_xx_from_it_after_down": len(five_xx_after_down),
        "unanswered": sum(s.status is None for s in samples),
        "slowest_s": max(s.seconds for s in samples),
        "failures": [_sample(s) for s in _failures(samples)][:20],
    }


def redis_restarted(fleet: Fleet, jobs: int = 200) -> dict[str, Any]:
    """Redis killed and started again (append-only file kept) while jobs are enqueued and the load runs."""
    fleet.wait_all_up(60)
    web_pids = {r.name: r.worker_pids() for r in fleet.replicas}
    masters = {r.name: r.server.process.pid for r in fleet.replicas if r.server.process}
    worker_pids = {w.name: w.pid for w in fleet.workers}
    producer = Producer(fleet.redis.url, jobs)
    with fleet.load() as load:
        load.wait_for(lambda samples: len(samples) >= 200, 60)
        producer.start()
        wait_until(lambda: producer.accepted >= jobs // 3, 60, "jobs to flow before the restart")
        stopped = time.monotonic()
        fleet.redis.stop()
        fleet.redis.start(*REDIS_PERSISTENCE, "--dir", fleet.redis_dir)
        restarted = time.monotonic()
        producer.join(120)
        # Recovered: every replica UP and answering /healthz 200 again through HAProxy.
        fleet.wait_all_up(60)
        load.wait_for(
            lambda samples: (
                {s.server for s in samples if s.started > restarted and s.status == 200}
                >= {r.name for r in fleet.replicas}
            ),
            60,
        )
        healthy_again = [s for s in load.since(restarted) if s.status == 200 and s.path == "/" + HEALTHZ]
        samples = load.stop()
    finished = producer.wait_finished(30)
    # A job whose dequeue was written to the append-only file while its reply died with Redis
    # stays in rq's intermediate queue: kept, not run. rq's maintenance (every 10 minutes) fails
    # it after a minute there, or requeues it if it was enqueued with a Retry.
    stranded = [job for job in producer.unfinished if job["in_intermediate_queue"]]
    after = [s for s in samples if s.started >= stopped]
    return {
        "outage_s": restarted - stopped,
        "first_healthy_after_s": (min(s.ended for s in healthy_again) - restarted) if healthy_again else None,
        "load_from_the_stop": _describe(after),
        "jobs_accepted": producer.accepted,
        "jobs_refused_while_down": producer.refused,
        "jobs_finished": finished,
        "jobs_stranded": len(stranded),
        "jobs_lost": producer.accepted - finished - len(stranded),
        "unfinished_jobs": producer.unfinished,
        "web_workers_same": web_pids == {r.name: r.worker_pids() for r in fleet.replicas},
        "web_masters_same": masters == {r.name: r.server.process.pid for r in fleet.replicas if r.server.process},
        "rq_workers_same": all(w.alive() for w in fleet.workers)
        and worker_pids == {w.name: w.pid for w in fleet.workers},
    }


class Producer(threading.Thread):
    """Enqueues ``count`` jobs one by one, as a web process would; a refused enqueue is tried again."""

    def __init__(self, redis_url: str, count: int) -> None:
        super().__init__(name="job-producer", daemon=True)
        self.redis_url = redis_url
        self.count = count
        self.accepted = 0
        self.refused = 0
        self.job_ids: list[str] = []
        self.unfinished: list[dict[str, Any]] = []

    def run(self) -> None:
        connection = Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        queue = Queue("default", connection=connection)
        deadline = time.monotonic() + 120
        while self.accepted < self.count and time.monotonic() < deadline:
            try:
                job = queue.enqueue("apps.core.jobs.echo", f"job {self.accepted}", result_ttl=3600)
            except Exception:  # noqa: BLE001 - Redis is down: the enqueue was not accepted
                self.refused += 1
                time.sleep(0.05)
                continue
            self.job_ids.append(job.id)
            self.accepted += 1
            time.sleep(0.01)
        connection.close()

    def wait_finished(self, timeout: float) -> int:
        connection = Redis.from_url(self.redis_url)

        def finished() -> int:
            statuses = [job.get_status() if job else None for job in Job.fetch_many(self.job_ids, connection)]
            return sum(status == JobStatus.FINISHED for status in statuses)

        with contextlib.suppress(AssertionError):
            wait_until(lambda: finished() == len(self.job_ids), timeout, "every accepted job to finish", interval=0.2)
        count = finished()
        queue = Queue("default", connection=connection)
        self.unfinished = [
            {
                "job_id": job_id,
                "status": str(job.get_status()) if job else "missing",
                "in_queue": job_id in queue.job_ids,
                "in_intermediate_queue": job_id in queue.intermediate_queue.get_job_ids(),
                "started": job_id in queue.started_job_registry,
                "failed": job_id in queue.failed_job_registry,
            }
            for job_id, job in zip(self.job_ids, Job.fetch_many(self.job_ids, connection), strict=True)
            if not job or job.get_status() != JobStatus.FINISHED
        ]
        connection.close()
        return count


def _sample(sample: Sample) -> dict[str, Any]:
    return {
        "path": sample.path,
        "status": sample.status,
        "error": sample.error,
        "server": sample.server,
        "seconds": round(sample.seconds, 3),
    }
