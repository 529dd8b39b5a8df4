"""The serving machinery's parts, in-process: the probe listener, the drain flag, the balance table."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from django.test import Client

from apps.common import draining
from config import probe_listener, workers
from harness.processes import free_port
from harness.project import http_get


def _hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _open_descriptors() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def test_the_probe_listener_answers_only_its_routes_and_stops_without_leaving_anything() -> None:
    threads_before, descriptors_before = threading.active_count(), _open_descriptors()
    port = free_port()
    listener = probe_listener.ProbeListener(_hello, "127.0.0.1", port).start()
    try:
        assert http_get(f"http://127.0.0.1:{port}/livez").body == b"/livez"
        assert http_get(f"http://127.0.0.1:{port}/readyz/").body == b"/readyz/"
        missing = http_get(f"http://127.0.0.1:{port}/admin/")
        assert (missing.status, missing.json()) == (404, {"status": "error", "error": "not_found"})
        # A connection that never sends anything holds no thread: the next probe is answered.
        with socket.create_connection(("127.0.0.1", port)):
            assert http_get(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    finally:
        listener.stop()
    assert not listener.thread.is_alive()
    assert threading.active_count() == threads_before
    assert _open_descriptors() == descriptors_before
    # Nothing listens there any more: a socket without SO_REUSEPORT can listen on the port.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the closed connections' TIME_WAIT
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_probe_listeners_share_their_port() -> None:
    port = free_port()
    first = probe_listener.ProbeListener(_hello, "127.0.0.1", port).start()
    second = probe_listener.ProbeListener(_hello, "127.0.0.1", port).start()
    try:
        assert {http_get(f"http://127.0.0.1:{port}/livez").status for _ in range(10)} == {200}
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def replica_draining() -> Iterator[None]:
    draining.set_draining()
    try:
        yield
    finally:
        draining.set_draining(False)


@pytest.mark.django_db
@pytest.mark.usefixtures("replica_draining")
def test_readiness_is_503_while_draining_and_health_and_liveness_are_not(client: Client) -> None:
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"status": "draining"})
    assert response["Cache-Control"] == "no-store"
    health_json = client.get("/readyz", HTTP_ACCEPT="application/health+json")
    assert (health_json.status_code, health_json.json()["status"]) == (503, "fail")
    # Still healthy, still live: only readiness takes the replica out of rotation.
    assert client.get("/healthz").json() == {"status": "ok", "db": "ok", "redis": "ok"}
    assert client.get("/livez").json() == {"status": "ok"}


@pytest.mark.slow  # forks
def test_the_draining_flag_is_shared_with_processes_forked_after_it() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child waits for the parent to set the flag, then reports what it sees
        os.close(write)
        os.read(read, 1)
        os._exit(0 if draining.is_draining() else 1)
    os.close(read)
    try:
        draining.set_draining()
        os.write(write, b"x")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(write)
        draining.set_draining(False)
    assert os.waitstatus_to_exitcode(status) == 0


class _Arbiter:
    def __init__(self) -> None:
        self.WORKERS: dict[int, Any] = {}


class _Worker:
    slot: int


@pytest.fixture
def table() -> Iterator[None]:
    workers._table[:] = bytes(len(workers._table))
    yield
    workers._table[:] = bytes(len(workers._table))


@pytest.mark.usefixtures("table")
def test_slots_are_the_lowest_free_ones_and_come_back_when_a_worker_exits() -> None:
    arbiter = _Arbiter()
    for pid in (101, 102, 103):
        worker = _Worker()
        workers.assign(arbiter, worker)
        arbiter.WORKERS[pid] = worker
    assert [w.slot for w in arbiter.WORKERS.values()] == [0, 1, 2]
    gone = arbiter.WORKERS.pop(102)
    workers.release(gone)
    replacement = _Worker()
    workers.assign(arbiter, replacement)
    assert replacement.slot == 1


@pytest.mark.usefixtures("table")
def test_the_least_busy_sibling_ignores_free_and_stale_slots() -> None:
    workers._write(0, os.getpid(), 5)  # this worker
    assert workers.least_busy_sibling(0) is None  # alone: nobody to defer to
    workers._write(1, 4242, 3)
    workers._write(2, 4343, 7)
    assert workers.least_busy_sibling(0) == 3
    # A sibling that stopped refreshing its slot (stuck, or killed) holds nobody back.
    stale = time.monotonic() - workers.STALE_SECONDS - 1
    workers._ENTRY.pack_into(workers._table, 1 * workers._ENTRY.size, 4242, stale, 3)
    assert workers.least_busy_sibling(0) == 7


def test_nginx_site_keeps_everything_but_the_two_addresses() -> None:
    from harness.project import NGINX_SITE, nginx_site

    site = nginx_site(8001, 8081)
    assert "server 127.0.0.1:8001;" in site
    assert "listen 127.0.0.1:8081;" in site
    original = NGINX_SITE.read_text().splitlines()
    assert len(site.splitlines()) == len(original)
    assert sum(a != b for a, b in zip(site.splitlines(), original, strict=True)) == 2
