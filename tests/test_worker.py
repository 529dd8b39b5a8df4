"""The background worker end to end: real ``manage.py rqworker`` processes, real Redis.

Jobs are enqueued in this process (the code under test: ``apps.core.background``) on the
test run's Redis and run by worker subprocesses pointed at the same Redis. Fault tests kill
workers and restart servers for real; where rq waits on a TTL of a minute or more, the test
ages the key as time would (and says so) instead of sleeping through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import django_rq
import pytest
import structlog
from django.conf import settings
from django.db import transaction
from django.test import Client
from redis import Redis
from rq import Retry
from rq.job import Job

from apps.core import background, jobs
from harness.fleet import RqWorker
from harness.processes import free_port, parse_json_lines, wait_until
from harness.project import PYTHON, ROOT, project_env, run_manage
from harness.servers import PostgresCluster, RedisServer
from tests import jobs as test_jobs

pytestmark = pytest.mark.slow

QUEUE = "default"
WORKERS_OF_QUEUE = f"rq:workers:{QUEUE}"
# As `make worker` runs it: a dead worker's registration expires worker-ttl + 60 s after its
# last heartbeat.
WORKER_TTL = 30
# Where a check is expected to pass, a deadline no loaded CI machine misses (the default is 5 s).
OK_TIMEOUT = ("--timeout", "20")
TERMINAL = {"finished", "failed", "stopped", "canceled", background.MISSING}


def wait_for_outcome(job_id: str, timeout: float = 30) -> background.JobOutcome:
    def ended() -> background.JobOutcome | None:
        result = background.outcome(job_id)
        return result if result.status in TERMINAL else None

    result: background.JobOutcome = wait_until(ended, timeout, f"job {job_id} to end")
    return result


def rq_keys(redis: Redis) -> set[str]:
    """rq's keys, except ``rq:queues``: the index of queue names, which any enqueue writes."""
    return {key.decode() for key in redis.scan_iter(match="rq:*", count=1000)} - {"rq:queues"}


def delete_rq_keys(redis: Redis) -> None:
    keys = list(redis.scan_iter(match="rq:*", count=1000))
    if keys:
        redis.delete(*keys)


class WorkerProcess(RqWorker):
    """``manage.py rqworker`` on the test queue, up once registered; its log (JSON lines) goes to a file."""

    def __init__(self, env: dict[str, str], *extra_args: str) -> None:
        super().__init__(env, f"test-{uuid.uuid4().hex[:12]}", QUEUE, WORKER_TTL, *extra_args)

    @property
    def key(self) -> str:
        return f"rq:worker:{self.name}"

    def start_registered(self, redis: Redis, timeout: float = 30) -> WorkerProcess:
        super().start()

        def registered() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited early ({self.process.returncode}):\n{self.output()}")
            return bool(redis.sismember(WORKERS_OF_QUEUE, self.key))

        wait_until(registered, timeout, "the worker to register")
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def events(self) -> list[dict[str, Any]]:
        return parse_json_lines(self.output())

    def stop(self) -> None:
        """Teardown: warm, then cold shutdown (which also kills a running work horse)."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGTERM):
            self.process.send_signal(sig)
            try:
                self.process.wait(5)
                return
            except subprocess.TimeoutExpired:
                continue
        self.process.kill()
        self.process.wait(5)


@pytest.fixture
def redis() -> Iterator[Redis]:
    """The test run's Redis (the one ``apps.core.background`` enqueues on), without rq state.

    It belongs to this test run (``REDIS_URL`` of the test settings), so rq's keys are cleared
    before and after each test: leftovers of one test (a killed worker's registration) must
    not make the next one pass or fail.
    """
    connection: Redis = django_rq.get_connection(QUEUE)
    delete_rq_keys(connection)
    yield connection
    delete_rq_keys(connection)


@pytest.fixture
def worker_env() -> dict[str, str]:
    """A worker subprocess's environment: the same Redis as this process."""
    return project_env(REDIS_URL=settings.REDIS_URL)


@pytest.fixture
def start_worker(redis: Redis, worker_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*extra_args: str, env: dict[str, str] | None = None, connection: Redis | None = None) -> WorkerProcess:
        worker = WorkerProcess(env or worker_env, *extra_args)
        started.append(worker)
        return worker.start_registered(connection or redis)

    yield start
    for worker in started:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)


@pytest.fixture
def marker() -> Iterator[Path]:
    """Where a blocking test job writes its work horse's pid once it runs.

    On teardown a horse still running (its worker was killed, then the test failed) is
    killed too, after checking that the pid still belongs to an rq worker process.
    """
    directory = Path(tempfile.mkdtemp(prefix="rqjob-"))
    path = directory / "running"
    yield path
    if path.exists():
        _kill_stray_horse(int(path.read_text()))
    for leftover in directory.iterdir():
        leftover.unlink()
    directory.rmdir()


def _kill_stray_horse(pid: int) -> None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # gone already (or no /proc): nothing to do
    if b"rqworker" in command:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def horse_pid(marker: Path, timeout: float = 30) -> int:
    wait_until(marker.exists, timeout, "the job to start running")
    return int(marker.read_text())


def burst(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_manage("rqworker", QUEUE, "--burst", "--worker-ttl", str(WORKER_TTL), env=env, timeout=60)


def check_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_manage("check_services", "--worker", *args, env=env, timeout=60)


def worker_check_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(result.stdout)
    worker: dict[str, Any] = body["checks"]["worker"]
    return worker


# --- a job from the service layer through Redis to a worker and back -------------------------


def test_a_burst_worker_runs_a_job_enqueued_by_the_service_and_the_result_is_read_back(
    redis: Redis, worker_env: dict[str, str]
) -> None:
    with structlog.contextvars.bound_contextvars(request_id="req-burst-42"):
        job_id = background.submit(jobs.echo, "hello")
    assert background.outcome(job_id).status == "queued"

    result = burst(worker_env)

    assert result.returncode == 0, result.stderr
    outcome = background.outcome(job_id)
    assert outcome.finished
    assert outcome.result["message"] == "hello"
    # The request's id travelled in job.meta and was bound while the job ran ...
    assert outcome.result["request_id"] == "req-burst-42"
    assert outcome.result["job_id"] == job_id
    # ... so every line the worker logged for this job carries it.
    job_lines = [event for event in parse_json_lines(result.stderr) if event.get("job_id") == job_id]
    assert any(event["event"] == "echo_job_ran" for event in job_lines)
    assert all(event["request_id"] == "req-burst-42" and event["worker_id"] for event in job_lines)
    # The configured result TTL applies (rq's own default would be 500 s).
    assert Job.fetch(job_id, connection=redis).result_ttl == settings.RQ["DEFAULT_RESULT_TTL"]


def test_a_long_running_worker_runs_jobs_and_check_services_sees_it(
    redis: Redis, worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    job_id = background.submit(jobs.echo, "from a long-running worker")
    outcome = wait_for_outcome(job_id)
    assert outcome.finished
    assert outcome.result["worker_id"] == worker.name
    before = rq_keys(redis)
    finished_before = redis.zrange(f"rq:finished:{QUEUE}", 0, -1)

    table = check_worker(worker_env, *OK_TIMEOUT)
    as_json = check_worker(worker_env, "--json", *OK_TIMEOUT)

    assert table.returncode == 0, table.stdout + table.stderr
    assert any(line.startswith("worker") and " ok " in line for line in table.stdout.splitlines())
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["status"] == "ok"
    assert body["worker"] == "ok"
    facts = worker_check_json(as_json)
    assert facts["error"] is None
    assert (facts["workers"], facts["queue_depth"], facts["failed_jobs"]) == (1, 0, 0)
    # Two canary round trips, and nothing of them is left in Redis.
    assert rq_keys(redis) == before
    assert redis.zrange(f"rq:finished:{QUEUE}", 0, -1) == finished_before


def test_check_services_worker_wait_retries_until_a_worker_consumes_the_queue(
    redis: Redis, worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    log = tmp_path / "check_services.log"
    command = [PYTHON, "manage.py", "check_services", "--worker", "--wait", "60", "--json"]
    env = {**worker_env, "LOG_LEVEL": "DEBUG"}  # each failed attempt of the worker check is a DEBUG line
    with log.open("w") as stderr:
        waiting = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:

        def saw_no_worker() -> bool:
            assert waiting.poll() is None, "check_services ended before any worker started"
            return any(
                e.get("event") == "health_probe_failed" and e.get("check") == "worker" and e.get("error") == "no_worker"
                for e in parse_json_lines(log.read_text())
            )

        wait_until(saw_no_worker, 60, "check_services to see that no worker runs")
        start_worker()
        stdout, _ = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()

    assert waiting.returncode == 0, stdout + log.read_text()
    assert json.loads(stdout)["worker"] == "ok"


def test_check_services_worker_fails_when_no_worker_is_running(redis: Redis, worker_env: dict[str, str]) -> None:
    result = check_worker(worker_env, "--json")

    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert (body["status"], body["db"], body["redis"], body["worker"]) == ("error", "ok", "ok", "error")
    facts = worker_check_json(result)
    assert facts["error"] == "no_worker"
    assert facts["workers"] == 0
    assert rq_keys(redis) == set()  # no canary is enqueued when nobody could run it


def test_check_services_worker_fails_when_the_only_worker_was_killed(
    redis: Redis, worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker()
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    before = rq_keys(redis)

    # The dead worker's registration outlives it until its key expires (worker-ttl + 60 s
    # after the last heartbeat): it still counts as registered, and the canary catches it.
    assert 0 < redis.ttl(worker.key) <= WORKER_TTL + 60
    stale = check_worker(worker_env, "--json", "--timeout", "2")

    assert stale.returncode == 1
    facts = worker_check_json(stale)
    assert facts["error"] == "timeout"
    assert facts["workers"] == 1
    assert rq_keys(redis) == before  # the unanswered canary was deleted, not left queued

    # Once the key has expired (done here at once, as Redis does when the TTL runs out), the
    # registration no longer counts at all.
    redis.delete(worker.key)
    expired = check_worker(worker_env, "--json", "--timeout", "2")

    assert expired.returncode == 1
    facts = worker_check_json(expired)
    assert (facts["error"], facts["workers"]) == ("no_worker", 0)


def test_failed_jobs_are_listed_and_requeued_through_the_validated_settings(
    redis: Redis, worker_env: dict[str, str]
) -> None:
    job_id = background.submit(test_jobs.fail, "a failure to inspect")
    assert burst(worker_env).returncode == 0
    assert background.outcome(job_id).status == "failed"

    listed = run_manage("failed_jobs", env=worker_env)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.strip().splitlines()
    assert line.startswith(f"{job_id}  tests.jobs.fail  ")
    assert line.endswith("RuntimeError: a failure to inspect")

    assert run_manage("failed_jobs", "--requeue", "no-such-job", env=worker_env).returncode == 2
    assert run_manage("failed_jobs", "--queue", "nope", env=worker_env).returncode == 2
    requeued = run_manage("failed_jobs", "--requeue", job_id, env=worker_env)
    assert requeued.returncode == 0, requeued.stderr
    assert background.outcome(job_id).status == "queued"
    assert run_manage("failed_jobs", env=worker_env).stdout.strip() == "No failed jobs on 'default'."


# --- faults ---------------------------------------------------------------------------------


def test_sigterm_mid_job_lets_the_job_finish_then_the_worker_exits_0(
    redis: Redis, start_worker: Callable[..., WorkerProcess], marker: Path
) -> None:
    worker = start_worker()
    job_id = background.submit(test_jobs.block, str(marker), 2)
    horse_pid(marker)

    worker.signal(signal.SIGTERM)

    assert worker.wait(30) == 0, worker.output()
    outcome = background.outcome(job_id)
    assert (outcome.status, outcome.result) == ("finished", "finished")
    assert not redis.sismember(WORKERS_OF_QUEUE, worker.key)  # deregistered on the way out
    assert any("warm shut down requested" in event["event"] for event in worker.events())


def test_a_second_sigterm_kills_the_running_job_and_the_worker_exits(
    redis: Redis, start_worker: Callable[..., WorkerProcess], marker: Path
) -> None:
    """docs/jobs.md: the second signal is a cold shutdown, for a job that must not be waited for."""
    worker = start_worker()
    job_id = background.submit(test_jobs.block, str(marker), 600)
    horse = horse_pid(marker)

    worker.signal(signal.SIGTERM)
    wait_until(lambda: any("warm shut down" in e["event"] for e in worker.events()), 30, "the warm shutdown")
    # Not a wait for a condition: rq ignores a second signal that comes within 1 s of the first
    # (a worker pool and the terminal both send one on Ctrl-C).
    time.sleep(1.1)
    worker.signal(signal.SIGTERM)

    worker.wait(60)  # far less than the job's 600 s
    wait_until(lambda: not os.path.exists(f"/proc/{horse}"), 30, "the work horse to be killed")
    assert background.outcome(job_id).status != "finished"
    assert not redis.sismember(WORKERS_OF_QUEUE, worker.key)


def test_sigkill_of_the_worker_alone_leaves_its_work_horse_to_finish_the_job(
    redis: Redis, start_worker: Callable[..., WorkerProcess], marker: Path
) -> None:
    worker = start_worker()
    job_id = background.submit(test_jobs.block, str(marker), 2)
    horse_pid(marker)

    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL

    # The horse runs in its own process group, so it outlives its parent and reports itself.
    outcome = wait_for_outcome(job_id)
    assert (outcome.status, outcome.result) == ("finished", "finished")


def kill_mid_job_and_let_the_registry_expire(
    redis: Redis, start_worker: Callable[..., WorkerProcess], marker: Path, **options: Any
) -> str:
    """Start a job, SIGKILL its worker and work horse, age the abandoned job's registry entry."""
    worker = start_worker()
    job_id = background.submit(test_jobs.block_first_attempt, str(marker), 120, **options)
    horse = horse_pid(marker)

    # What the OOM killer or `docker kill` does: the worker and its work horse die at once.
    os.kill(worker.pid, signal.SIGKILL)
    os.kill(horse, signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL

    # Nothing records the death: the job stays "started" until its heartbeat entry in the
    # started registry expires (job monitoring interval 30 s + 60 s).
    assert background.outcome(job_id).status == "started"
    started = django_rq.get_queue(QUEUE).started_job_registry
    members = cast(list[bytes], redis.zrange(started.key, 0, -1))
    [entry] = [member for member in members if member.decode().startswith(job_id)]
    expires_in = float(redis.zscore(started.key, entry) or 0) - time.time()
    assert 0 < expires_in <= 30 + 60 + 5

    # rq will not go below 60 s there; age the entry as time would instead of sleeping.
    redis.zadd(started.key, {entry: 1}, xx=True)
    return job_id


# Real commits: inside a test-wrapping transaction, submit() would wait for a commit forever.
@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_job_lands_in_the_failed_registry_and_the_dashboard_requeues_it(
    redis: Redis,
    worker_env: dict[str, str],
    start_worker: Callable[..., WorkerProcess],
    marker: Path,
    client: Client,
    admin_client: Client,
) -> None:
    job_id = kill_mid_job_and_let_the_registry_expire(redis, start_worker, marker)

    # Every worker cleans the registries when it starts (and every 10 minutes after).
    cleanup = burst(worker_env)

    assert cleanup.returncode == 0, cleanup.stderr
    assert background.outcome(job_id).status == "failed"
    assert job_id in django_rq.get_queue(QUEUE).failed_job_registry.get_job_ids()
    latest = Job.fetch(job_id, connection=redis).latest_result()
    assert latest is not None
    assert "AbandonedJobError" in (latest.exc_string or "")

    # django-rq's dashboard under the admin URL, staff only: list, then requeue.
    failed_page = f"/{settings.ADMIN_URL}django_rq/queues/0/failed/"
    assert client.get(failed_page).status_code == 302  # to the admin login
    assert job_id in admin_client.get(failed_page).content.decode()
    assert admin_client.post(f"/{settings.ADMIN_URL}django_rq/queues/0/{job_id}/requeue/").status_code == 302
    assert background.outcome(job_id).status == "queued"
    rerun = burst(worker_env)

    assert rerun.returncode == 0, rerun.stderr
    assert background.outcome(job_id) == background.JobOutcome("finished", "retried")


def test_sigkill_mid_job_is_retried_when_enqueued_with_retry(
    redis: Redis, worker_env: dict[str, str], start_worker: Callable[..., WorkerProcess], marker: Path
) -> None:
    job_id = kill_mid_job_and_let_the_registry_expire(redis, start_worker, marker, retry=Retry(max=1))

    result = burst(worker_env)

    # The cleanup requeued it, and the same burst worker ran it again.
    assert result.returncode == 0, result.stderr
    assert background.outcome(job_id) == background.JobOutcome("finished", "retried")


def test_the_worker_reconnects_after_redis_restarts_under_it(
    redis: Redis, start_worker: Callable[..., WorkerProcess]
) -> None:
    server = RedisServer().start()
    try:
        env = project_env(REDIS_URL=server.url)
        connection = Redis.from_url(server.url)
        worker = start_worker(env=env, connection=connection)
        # Idle: blocked waiting for a job. (While it starts up, a lost connection makes it
        # exit with status 1 instead; see the next test.)
        wait_until(lambda: connection.info("clients")["blocked_clients"] >= 1, 30, "the worker to wait for jobs")

        # Killed and started again on the same port, without persistence: every key is gone.
        run_id = connection.info("server")["run_id"]
        server.stop()
        server.start()
        assert connection.info("server")["run_id"] != run_id

        queue = django_rq.get_queue(QUEUE, connection=connection)
        job = queue.enqueue(jobs.echo, "after the restart")
        assert job is not None
        # rq retries with back-off (1 s, 2 s, 4 s, ...) while Redis is unreachable.
        wait_until(lambda: job.get_status(refresh=True) == "finished", 30, "the job after the restart")
        result = job.return_value()
        assert result is not None
        assert result["worker_id"] == worker.name
        assert worker.alive()

        # The worker registered itself again, so the liveness check sees it.
        wait_until(lambda: connection.sismember(WORKERS_OF_QUEUE, worker.key), 10, "the worker to re-register")
        check = check_worker(env, "--json", *OK_TIMEOUT)
        assert check.returncode == 0, check.stdout + check.stderr
        assert worker_check_json(check)["workers"] == 1

        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        connection.close()
    finally:
        server.stop()


def test_a_busy_worker_survives_redis_restarts_and_loses_no_job(
    redis: Redis, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Redis killed and restarted (append-only, as production runs it) while jobs flow, three times.

    rq retries its blocking dequeue, but a connection error elsewhere in its loop (the heartbeat
    right after a dequeue, preparing the execution) used to end the worker, its job stuck.
    """
    persistence = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    server = RedisServer().start(*persistence)
    try:
        connection = Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
        worker = start_worker(env=project_env(REDIS_URL=server.url), connection=connection)
        queue = django_rq.get_queue(QUEUE, connection=connection)
        accepted: list[str] = []
        for restart in range(3):
            for number in range(30):
                accepted.append(queue.enqueue(jobs.echo, f"round {restart} job {number}").id)
            wait_until(lambda: queue.finished_job_registry.count >= len(accepted) - 25, 60, "jobs to be running")
            server.stop()  # SIGKILL, mid-flow
            server.start(*persistence)
        wait_until(
            lambda: all(job and job.get_status() == "finished" for job in Job.fetch_many(accepted, connection)),
            120,
            "every accepted job to finish",
        )
        assert worker.alive(), worker.output()[-3000:]
        connection.close()
    finally:
        server.stop()


@pytest.mark.parametrize(("log_level", "levels_seen"), [("WARNING", set()), ("INFO", {"info"})])
def test_log_level_sets_the_workers_level_whatever_its_verbosity(
    redis: Redis, worker_env: dict[str, str], log_level: str, levels_seen: set[str]
) -> None:
    """django-rq derives rq's level from --verbosity (INFO by default); LOG_LEVEL must rule."""
    job_id = background.submit(jobs.echo, "a job that logs at INFO")

    result = burst({**worker_env, "LOG_LEVEL": log_level})

    assert result.returncode == 0, result.stderr
    assert background.outcome(job_id).finished  # it ran, and said so only where the level allows
    events = parse_json_lines(result.stderr)
    assert {event["level"] for event in events} - {"warning", "error", "critical"} == levels_seen
    if levels_seen:
        assert any(event["logger"] == "rq.worker" and event["level"] == "info" for event in events)


def test_a_worker_that_cannot_reach_redis_exits_1_for_its_supervisor_to_restart(redis: Redis) -> None:
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"

    result = run_manage("rqworker", QUEUE, env=project_env(REDIS_URL=nothing_listens), timeout=60)

    assert result.returncode == 1
    assert "Connection refused" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_jobs_are_enqueued_only_when_the_transaction_commits(redis: Redis, worker_env: dict[str, str]) -> None:
    with transaction.atomic():
        rolled_back = background.submit(jobs.echo, "rolled back")
        transaction.set_rollback(True)
    with transaction.atomic():
        committed = background.submit(jobs.echo, "committed")
        assert background.outcome(committed).status == background.MISSING  # not before the commit
    assert background.outcome(committed).status == "queued"

    result = burst(worker_env)

    assert result.returncode == 0, result.stderr
    assert background.outcome(committed).result["message"] == "committed"
    assert background.outcome(rolled_back).status == background.MISSING
    assert rolled_back not in result.stderr


def test_database_jobs_in_a_row_survive_a_postgresql_restart(
    redis: Redis, start_worker: Callable[..., WorkerProcess], postgres_cluster: PostgresCluster
) -> None:
    worker = start_worker(env=project_env(REDIS_URL=settings.REDIS_URL, DATABASE_URL=postgres_cluster.url))
    first = wait_for_outcome(background.submit(jobs.database_check), timeout=60)
    assert first.finished

    postgres_cluster.stop()  # every connection to it dies
    postgres_cluster.start()
    second = wait_for_outcome(background.submit(jobs.database_check), timeout=60)

    assert second.finished, worker.output()
    assert first.result["vendor"] == second.result["vendor"] == "postgresql"
    assert first.result["worker_id"] == second.result["worker_id"] == worker.name
    assert first.result["backend_pid"] != second.result["backend_pid"]


def test_worker_alive_follows_rq_s_heartbeat(
    redis: Redis, start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> None:
    """The worker Deployment's liveness probe (deploy/k8s): alive while the worker's key lives."""
    nobody = run_manage("worker_alive", env=worker_env)
    assert nobody.returncode == 1
    assert "no live rq worker registration for host" in nobody.stderr

    worker = start_worker()
    alive = run_manage("worker_alive", env=worker_env)
    assert alive.returncode == 0, alive.stderr
    assert alive.stdout.startswith("alive: 1 worker(s) on ")

    # Hung: no more heartbeats. Its key expires worker-ttl + 60 s after the last one; the test
    # deletes it as that expiry would, instead of sleeping 90 s.
    worker.signal(signal.SIGSTOP)
    try:
        redis.delete(worker.key)
        assert run_manage("worker_alive", env=worker_env).returncode == 1
    finally:
        worker.signal(signal.SIGCONT)
    # Running again: its next heartbeat (idle: every worker-ttl - 15 s) registers it again.
    wait_until(lambda: run_manage("worker_alive", env=worker_env).returncode == 0, 60, "the worker to be alive again")


def test_worker_alive_does_not_blame_the_worker_for_redis() -> None:
    """Restarting workers would not bring Redis back, and rq reconnects by itself."""
    result = run_manage("worker_alive", env=project_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("redis unreachable (ConnectionError)")
