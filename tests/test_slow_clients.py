"""Slow and silent clients (issue 15, first item; issue 13's slow uploads), with real processes.

gunicorn's gthread worker gives a request thread to a connection that has not sent its request
(for up to 5 s) and reads headers and bodies with no deadline, so a few such clients hold every
thread. The defence is nginx in front (``deploy/nginx/default.conf``, Debian's nginx here): it reads
every request whole before gunicorn sees it. Both halves are shown: the attack starves gunicorn
alone, and the same attack through nginx leaves ``/livez`` answering.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.processes import free_port
from harness.project import Server, http_get, nginx_site, project_env
from harness.servers import NGINX, Nginx
from harness.slow_clients import SilentConnections, TricklingUploads

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not NGINX.exists(), reason=f"{NGINX} is not installed (Debian: apt-get install nginx)"),
]

WORKERS, THREADS = 2, 4
METRICS_TOKEN = "m" * 32


@pytest.fixture
def gunicorn() -> Iterator[Server]:
    env = {**project_env(), "WEB_CONCURRENCY": str(WORKERS), "LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN}
    server = Server(env).start(wait=60)
    try:
        server.wait_for_workers(WORKERS)
        yield server
    finally:
        server.stop()


@pytest.fixture
def nginx(gunicorn: Server) -> Iterator[Nginx]:
    port = free_port()
    proxy = Nginx(nginx_site(gunicorn.port, port), port).start()
    yield proxy
    proxy.destroy()


def _attack(port: int) -> tuple[TricklingUploads, SilentConnections]:
    """Issue 13's slow uploads (16 logins whose body trickles in) and issue 15's silent connections
    (twelve, reopened every 4.5 s), at once, twice what it takes to hold every thread."""
    uploads = TricklingUploads(port, "/admin/login/", 2 * WORKERS * THREADS)
    silent = SilentConnections(port, 12, reopen=4.5)
    return uploads, silent


def test_slow_clients_hold_every_thread_of_gunicorn_alone(gunicorn: Server) -> None:
    """The threat, measured: this is why nginx is a requirement, not an option."""
    uploads, silent = _attack(gunicorn.port)
    with uploads, silent, pytest.raises(OSError, match="timed out"):
        http_get(gunicorn.url + "/livez", timeout=2)


def test_through_nginx_the_same_clients_hold_no_gunicorn_thread(gunicorn: Server, nginx: Nginx) -> None:
    via_nginx = f"http://127.0.0.1:{nginx.port}"
    uploads, silent = _attack(nginx.port)
    with uploads, silent:
        for _ in range(5):
            reply = http_get(via_nginx + "/livez", timeout=5)
            assert (reply.status, json.loads(reply.body)) == (200, {"status": "ok"})
        # gunicorn has seen none of the unfinished requests: nginx still holds them.
        assert [e for e in gunicorn.events() if e.get("path") == "/admin/login/"] == []
    assert "[emerg]" not in nginx.log()
    assert "[alert]" not in nginx.log()


def test_nginx_does_not_route_metrics(gunicorn: Server, nginx: Nginx) -> None:
    """Prometheus scrapes gunicorn directly; through the public proxy /metrics is a 404, token or not."""
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert http_get(gunicorn.url + "/metrics", scrape).status == 200
    for path in ("/metrics", "/metrics/", "//metrics", "/%6Detrics", "/metrics?format=text"):
        assert http_get(f"http://127.0.0.1:{nginx.port}{path}", scrape).status == 404, path
    assert http_get(f"http://127.0.0.1:{nginx.port}/livez").status == 200
