"""gunicorn settings: read from the same validated environment as Django, logs through structlog.

gunicorn loads this file automatically from the project root; `gunicorn` alone serves the app.
"""

import os
from typing import Any

from apps.common import (
    draining,  # noqa: F401 - mapped here, in the master, before any worker forks
    multiprocess_metrics,
)
from apps.common.masking import service_fields
from config import drain, env, probe_listener
from config import workers as balanced
from config.logging import build_logging_config
from config.startup import exit_on_bad_configuration

try:
    # Validate in the master, before forking: one readable report and exit status 2 instead
    # of every worker failing to boot.
    _config = env.load_project_config()
except env.ConfigurationError as error:
    exit_on_bad_configuration(error)

wsgi_app = "config.wsgi:application"
bind = [f"0.0.0.0:{_config.port}"]
# Explicit, never cpu_count(): inside a container that is the host's core count.
workers = _config.web_concurrency
# Threads let one process answer probes while another request waits on I/O. gthread, except that
# the least-busy worker accepts the next connection and hands over its excess (config/workers.py).
# Plain gthread lets the kernel give a burst of persistent connections to one worker: issue 17
# measured 1,743 to 4,372 req/s at 8 connections, run to run, as they happened to fall. The
# settings that spread them break something else (measured side by side in docs/performance.md):
# worker_connections = threads and keepalive = 0 close every connection, and gunicorn 27 then
# stalls the whole worker up to 2 s per client that keeps its end open (new clients waited 1.8 to
# 4.5 s beside 50 idle ones); reuse_port deals connections at random (6 or more of 8 on one worker
# in 29% of bursts). Slow clients are nginx's job (deploy/nginx/): no gthread setting keeps a
# silent or trickling client from holding a thread.
worker_class = "config.workers.BalancedThreadWorker"
threads = 4
# Heartbeat files on tmpfs: a slow or full disk must not make the arbiter kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - tmpfs, not a temp file
timeout = 30
# Shorter than Docker's default 10 s stop grace period, so in-flight requests finish cleanly. A stop
# takes DRAIN_SECONDS more: the orchestrator's grace period must cover both (docs/deploy.md).
graceful_timeout = 8
# Above nginx's upstream keepalive_timeout (4 s): nginx drops an idle connection first, never
# gunicorn while nginx is sending a request on it. Idle kept-alive connections cost no thread.
keepalive = 5
# One rule for forwarded headers (docs/security.md): only these peers may set them, and only
# X-Forwarded-Proto (when DJANGO_SECURE_PROXY_SSL_HEADER is true) may make a request https.
# gunicorn's defaults also believe X-Forwarded-Ssl and X-Forwarded-Protocol, whatever the setting,
# and take a SCRIPT_NAME header as the WSGI SCRIPT_NAME (every URL moved under a prefix): none of that.
forwarded_allow_ips = ",".join(_config.forwarded_allow_ips)
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"} if _config.secure_proxy_ssl_header else {}
forwarder_headers = ""
# gunicorn 27 opens a control socket in ~/.gunicorn by default: parallel instances collide and a
# non-root user without a home cannot create it. Nothing here uses it.
control_socket_disable = True

accesslog = "-"
logconfig_dict = build_logging_config(level=_config.log_level, fmt=_config.log_format)
# The access line carries the response's X-Request-ID: django-structlog's context is gone by then.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'


def on_starting(server: Any) -> None:
    # With METRICS_TOKEN set, one scrape reports every worker: a fresh directory for this replica's
    # metrics files, named in the environment before any worker forks (docs/metrics.md).
    if _config.metrics_token:
        import structlog

        directory = multiprocess_metrics.prepare()
        structlog.get_logger("gunicorn.conf").info("metrics_multiprocess", directory=str(directory))


def on_exit(server: Any) -> None:
    multiprocess_metrics.remove()


def when_ready(server: Any) -> None:
    import structlog

    structlog.get_logger("gunicorn.conf").info(
        "web_ready",
        workers=workers,
        probe_port=_config.probe_port,
        drain_seconds=_config.drain_seconds,
        **service_fields(_config.database, _config.redis_url),
    )
    # SIGTERM: readiness 503 at once, DRAIN_SECONDS of serving, then gunicorn's graceful shutdown.
    drain.install(_config.drain_seconds)


def pre_fork(server: Any, worker: Any) -> None:
    balanced.assign(server, worker)


def child_exit(server: Any, worker: Any) -> None:
    balanced.release(worker)
    # The dead worker's live gauges go; its counts are folded into the replica's archive files.
    multiprocess_metrics.worker_exited(worker.pid, live=server.WORKERS)


def post_worker_init(worker: Any) -> None:
    """PROBE_PORT: this worker also answers the probes there, on threads of its own."""
    import structlog

    if _config.probe_port is not None:
        probe_listener.start(worker.wsgi, _probe_host(worker.cfg.address), _config.probe_port)
    structlog.get_logger("gunicorn.conf").info("worker_ready", pid=os.getpid())


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the probe listener (the health threads stop at exit, by themselves)."""
    probe_listener.stop()


def _probe_host(addresses: list[Any]) -> str:
    """The probe port listens on the host of the first TCP address gunicorn binds (0.0.0.0 here)."""
    hosts = [address[0] for address in addresses if isinstance(address, tuple)]
    return hosts[0] if hosts else "0.0.0.0"  # noqa: S104 - the pod IP is where orchestrators probe
