"""Three replicas and two rq workers behind HAProxy, under steady load at 16 connections (harness.scaling).

Real processes on free ports: Debian's haproxy with ``deploy/haproxy/haproxy.cfg`` as written,
gunicorn replicas, ``manage.py rqworker``, a throwaway PostgreSQL cluster and an append-only
throwaway Redis. The load runs through HAProxy, on keep-alive connections, and every answer is
recorded with the replica that gave it (``harness.load``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apps.common.probe_paths import READYZ
from harness.fleet import HAPROXY_CONFIG, Backend, haproxy_config
from harness.scaling import (
    DEADLINE,
    FALL,
    INTER,
    RISE,
    SLOWSTART,
    TIMEOUT_CHECK,
    TIMEOUT_SERVER,
    WORKERS,
    Fleet,
    database_path_lost,
    redis_restarted,
    rolling_restart,
)
from harness.servers import postgres_bin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Between HAProxy's state change and this test seeing it: a 20 ms poll of the stats socket, on
# a machine other suites keep busy.
OBSERVATION_SLACK = 0.25


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy; .ci/run does it)")
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed on this machine")
    started = Fleet.start()
    yield started
    started.stop()


def test_the_configuration_is_haproxy_s_and_checks_the_contract_s_readiness(tmp_path: Path) -> None:
    """HAProxy itself accepts the file as the tests run it; the numbers the scenarios rely on are in it."""
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(8080, [Backend("web1", 8000, 8001)], tmp_path / "admin.sock"))
    checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Warnings were found" not in checked.stdout + checked.stderr
    text = HAPROXY_CONFIG.read_text()
    assert f"option httpchk GET /{READYZ}\n" in text
    assert re.search(
        rf"^\s+default-server check inter {INTER:g}s fall {FALL} rise {RISE} slowstart {SLOWSTART:g}s$", text, re.M
    )
    assert re.search(rf"^\s+timeout check {TIMEOUT_CHECK:g}s$", text, re.M)
    assert re.search(rf"^\s+timeout server {TIMEOUT_SERVER:g}s$", text, re.M)
    # Replayed on another replica only when that is safe: GET and HEAD.
    assert "http-request disable-l7-retry unless METH_GET" in text


def test_a_rolling_restart_fails_no_request(fleet: Fleet, record_property: Callable[[str, object], None]) -> None:
    result = rolling_restart(fleet)
    record_property("rolling_restart", result)
    assert [step["replica"] for step in result["steps"]] == [r.name for r in fleet.replicas]
    assert result["load"]["requests"] >= 1000, result["load"]
    assert result["load"]["failed"] == 0, result["failures"]
    assert result["load"]["retried_stale_connections"] == 0


def test_a_replica_that_loses_its_database_path_is_taken_out_and_back(
    fleet: Fleet, record_property: Callable[[str, object], None]
) -> None:
    result = database_path_lost(fleet)
    record_property("database_path_lost", result)
    # Out of rotation within fall x inter plus the deadline (without a probe listener: plus
    # `timeout check` per check, see harness.scaling).
    assert result["marked_down_s"] <= result["bound_s"] + OBSERVATION_SLACK, result
    # Once marked down, nothing reaches it: no 5xx from it, nothing at all.
    assert result["answered_by_it_while_down"] == 0
    assert result["five_xx_from_it_after_down"] == 0
    # No hung request: every request got an answer, the ones stuck on the stalled database
    # after HAProxy's `timeout server`, from another replica.
    assert result["unanswered"] == 0
    assert result["slowest_s"] <= TIMEOUT_SERVER + DEADLINE + 3, result
    assert {failure["server"] for failure in result["failures"]} <= {result["replica"]}
    # Back once the path heals: rise x inter after the first good check.
    assert result["back_up_s"] <= RISE * INTER + INTER + DEADLINE + OBSERVATION_SLACK + 2, result


def test_after_a_redis_restart_everything_recovers_by_itself_and_no_job_is_lost(
    fleet: Fleet, record_property: Callable[[str, object], None]
) -> None:
    result = redis_restarted(fleet)
    record_property("redis_restarted", result)
    assert result["jobs_accepted"] == 200
    # Every accepted job ran, or (when Redis died between persisting a dequeue and sending its
    # reply) is kept in rq's intermediate queue, which rq's own maintenance fails or retries.
    assert result["jobs_lost"] == 0, result["unfinished_jobs"]
    assert result["jobs_stranded"] <= WORKERS, result["unfinished_jobs"]  # one dequeue in flight each
    assert result["web_masters_same"]
    assert result["web_workers_same"]
    assert result["rq_workers_same"]
    # The replicas answered /healthz 200 again, each of them, through HAProxy.
    assert result["first_healthy_after_s"] is not None
