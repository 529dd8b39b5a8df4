"""gunicorn settings: read from the same validated environment as Django, logs through structlog.

gunicorn loads this file automatically from the project root; `gunicorn` alone serves the app.
"""

import os

from apps.common.masking import service_fields
from config import env
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
# Threads let one process answer probes while another request waits on I/O.
worker_class = "gthread"
threads = 4
# Heartbeat files on tmpfs: a slow or full disk must not make the arbiter kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - tmpfs, not a temp file
timeout = 30
# Shorter than Docker's default 10 s stop grace period, so in-flight requests finish cleanly.
graceful_timeout = 8
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


def when_ready(server: object) -> None:
    import structlog

    structlog.get_logger("gunicorn.conf").info(
        "web_ready", workers=workers, **service_fields(_config.database, _config.redis_url)
    )
