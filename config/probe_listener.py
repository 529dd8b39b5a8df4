"""The probe listener (``PROBE_PORT``): the probes on a port and threads of their own, in each worker.

With gthread, a probe on the main port waits in line behind the requests: when slow requests hold
every request thread, ``/livez`` times out and an orchestrator restarts a replica that is only
busy. So each gunicorn worker also serves the probe paths on ``PROBE_PORT``:

- Its own socket, with ``SO_REUSEPORT``: every worker of the replica listens on the same port and
  the kernel spreads the probe connections over them. A worker that exits takes its socket away;
  the others keep answering.
- Its own threads: waitress, one I/O thread and two task threads. waitress reads a whole request
  before a task thread sees it, so a silent or trickling client on this port holds no thread; an
  idle connection is closed after ``CHANNEL_TIMEOUT``, and past ``CONNECTION_LIMIT`` open
  connections it stops accepting until some close.
- The same answers: the requests go to the worker's own Django application, so the bodies, status
  codes, deadline and log lines are those of the main port. Only ``ROUTES`` reach it; any other
  path is a 404 from here (the admin and the service's views are never on this port).
- It never touches the worker's heartbeat. A worker whose main loop is stuck past gunicorn's
  ``timeout`` is still killed and replaced by the arbiter, and its listener goes with it: "live"
  here means a worker of this replica is up and answering, as gunicorn's arbiter keeps it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from apps.common.probe_paths import EARLY_PATHS, exact_paths
from apps.common.request_id import accept_or_generate

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The paths this port answers: the probes and /metrics (still only for METRICS_TOKEN).
ROUTES: tuple[str, ...] = EARLY_PATHS
TASK_THREADS = 2
CONNECTION_LIMIT = 64
CHANNEL_TIMEOUT = 10  # seconds an idle connection stays open
_NOT_FOUND = b'{"status": "error", "error": "not_found"}'

logger = structlog.get_logger("config.probe_listener")


def only(paths: Iterable[str], app: WSGIApp) -> WSGIApp:
    """``app`` for ``paths`` (with or without a trailing slash); a JSON 404 for anything else."""
    allowed = exact_paths(paths)

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in allowed:
            return app(environ, start_response)
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        # Like every answer of the service (the paths above get theirs from Django's middleware).
        headers.append(("X-Request-ID", accept_or_generate(environ.get("HTTP_X_REQUEST_ID"))))
        start_response("404 Not Found", [*headers, ("Content-Length", str(len(_NOT_FOUND)))])
        return [_NOT_FOUND]

    return route


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``: one per worker, same port."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class ProbeListener:
    """waitress on a ``SO_REUSEPORT`` socket, in a thread of its own; ``stop()`` ends it all."""

    def __init__(self, app: WSGIApp, host: str, port: int) -> None:
        self.sock = reuse_port_socket(host, port)
        try:
            server = create_server(
                only(ROUTES, app),
                sockets=[self.sock],
                threads=TASK_THREADS,
                connection_limit=CONNECTION_LIMIT,
                channel_timeout=CHANNEL_TIMEOUT,
                cleanup_interval=1,
                max_request_body_size=1024,  # probes have no body
                asyncore_use_poll=True,  # select() fails on descriptors above 1023
            )
        except BaseException:
            self.sock.close()
            raise
        if not isinstance(server, BaseWSGIServer) or isinstance(server, MultiSocketServer):
            raise TypeError("waitress returned a server for more than one socket")  # one socket given
        self.server = server
        self.thread = threading.Thread(target=server.run, name="probe-listener", daemon=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> ProbeListener:
        self.thread.start()
        logger.debug("probe_listener_started", port=self.port, routes=["/" + path for path in ROUTES])
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Close the socket and every connection, end the I/O thread and the task threads.

        The closing runs on the I/O thread itself (waitress's trigger), never under its feet.
        """
        server = self.server

        def close_everything() -> None:
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        if self.thread.is_alive():
            server.trigger.pull_trigger(close_everything)
            self.thread.join(timeout)
        else:
            server.close()
        server.task_dispatcher.shutdown(timeout=timeout)
        self.sock.close()


_current: ProbeListener | None = None


def start(app: WSGIApp, host: str, port: int) -> ProbeListener:
    """Start this process's probe listener (a gunicorn worker, after it loaded the application)."""
    global _current
    _current = ProbeListener(app, host, port).start()
    return _current


def stop(timeout: float = 2.0) -> None:
    """Stop this process's probe listener, if it has one (a gunicorn worker as it exits)."""
    global _current
    listener, _current = _current, None
    if listener is not None:
        listener.stop(timeout)
