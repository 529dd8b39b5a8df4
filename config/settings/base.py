"""Django settings, built from the validated environment (``config.env``) and nothing else.

Development and production differ only through environment variables: DEBUG switches the
defaults (log format, HTTPS hardening), every value can still be set explicitly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from apps.common.probe_paths import EARLY_PATHS, path_pattern
from config import env
from config.logging import build_logging_config

# Lower case on purpose: Django's settings (and its debug page) take only upper-case names, and
# the settings below take what they need from it.
_config = env.load_project_config()

BASE_DIR = env.BASE_DIR
DEBUG = _config.debug
SECRET_KEY = _config.secret_key
ALLOWED_HOSTS = _config.allowed_hosts
CSRF_TRUSTED_ORIGINS = _config.csrf_trusted_origins

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_structlog",
    "django_rq",
    "axes",
    "apps.core",
    "apps.health",
    "apps.metrics",
]

MIDDLEWARE = [
    # Validates X-Request-ID and binds it to the log context before anything logs.
    "apps.core.middleware.RequestIdMiddleware",
    # Answers /livez, /readyz and /healthz before host validation and the HTTPS redirect:
    # orchestrators probe the pod IP over plain HTTP.
    "apps.health.middleware.HealthProbeMiddleware",
    # /metrics, likewise early, for the METRICS_TOKEN only (a 404 for anyone else).
    "apps.metrics.middleware.MetricsEndpointMiddleware",
    # Counts and times every other request (off while METRICS_TOKEN is unset).
    "apps.metrics.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy and Permissions-Policy on HTML pages (SECURE_CSP, PERMISSIONS_POLICY).
    "apps.core.security_headers.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After AuthenticationMiddleware so request lines carry the user id.
    "django_structlog.middlewares.RequestMiddleware",
    # Turns a locked-out login into its 429 page (no database work on other requests).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_settings(parsed: dict[str, Any], pooler: str = "none") -> dict[str, Any]:
    database = dict(parsed)
    if database["ENGINE"] == "django.db.backends.postgresql":
        database["OPTIONS"] = {
            # libpq's floor is 2 s; the health probe enforces its own, shorter deadline.
            "connect_timeout": 2,
            # Notice a peer that vanished (no FIN) instead of waiting on it for minutes.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
            **database.get("OPTIONS", {}),
        }
        # Persistent connections, checked before reuse at the start of each request.
        database["CONN_MAX_AGE"] = 60
        database["CONN_HEALTH_CHECKS"] = True
    if pooler == "pgbouncer":
        # Django's "Transaction pooling and server-side cursors": a named cursor (iterator())
        # outlives its transaction, and the next FETCH may run on another server connection.
        # Prepared statements and server-side binding stay at Django's defaults (off); the
        # environment check refuses DATABASE_URL options that would turn them on.
        database["DISABLE_SERVER_SIDE_CURSORS"] = True
    return database


DATABASES = {"default": _database_settings(_config.database, _config.database_pooler)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = _config.redis_url
# Bounded waits on every Redis call: a cache call (and the health probe's handshake) fails
# within 2 s instead of redis-py's own defaults.
REDIS_SOCKET_TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 2}

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {**REDIS_SOCKET_TIMEOUTS, "health_check_interval": 30}},
    },
}


def _queue_url(url: str) -> str:
    # Appended as text: urlunsplit() would turn unix:///path into unix:/path.
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{urlencode({**REDIS_SOCKET_TIMEOUTS, 'client_name': 'rq'})}"


# The queues do NOT share django-redis's pool. rq raises the socket timeout of the pool of any
# Worker object it builds to minutes (the worker needs that for its blocking waits; the web
# process's queue dashboard builds them too). With the URL form, django-rq makes a client per
# queue lookup, so that raise never reaches the cache, the health probe, or later enqueues, and
# every enqueue from the web side keeps its 2 s bound. client_name labels them in CLIENT LIST.
RQ_QUEUES = {
    "default": {"URL": _queue_url(REDIS_URL), "DEFAULT_TIMEOUT": 300},
}
RQ = {
    # Enqueue only once the surrounding transaction commits (django-rq's default, made explicit).
    "COMMIT_MODE": "on_db_commit",
    "QUEUE_CLASS": "apps.core.queues.ContextQueue",
    "WORKER_CLASS": "apps.core.worker.ContextWorker",
    # How long a finished job's result stays readable (ContextQueue applies it to enqueue()).
    "DEFAULT_RESULT_TTL": 3600,
}
# The dashboard is routed once, behind its permission (apps.core.queue_dashboard); django-rq's own
# admin registration would add a second copy of every view at <admin>/django_rq/dashboard/ with
# staff-only checks and its crashing token comparison.
RQ_SHOW_ADMIN_LINK = False

# Failed logins are counted per client address (apps.core.client_ip: the forwarded-headers rule)
# and locked out after AXES_FAILURE_LIMIT within AXES_COOLOFF_TIME. Axes's backend comes first: a
# locked-out client is refused before any password is hashed (docs/security.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "apps.core.client_ip.client_ip"
# Stored with each attempt: never the password (axes's rule), nor the CSRF token.
AXES_SENSITIVE_PARAMETERS = ["password", "csrfmiddlewaretoken"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # The manifest storage needs `collectstatic` first (done at image build); development
        # serves files straight from the apps.
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        ),
    },
}

ADMIN_URL = _config.admin_url

# HTTPS hardening: secure by default when DEBUG is false; each knob has its own variable.
SECURE_SSL_REDIRECT = _config.secure_ssl_redirect
# A backstop only: HealthProbeMiddleware and MetricsEndpointMiddleware answer these paths before
# SecurityMiddleware runs.
SECURE_REDIRECT_EXEMPT = [path_pattern(path) for path in EARLY_PATHS]
SECURE_HSTS_SECONDS = _config.secure_hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = _config.secure_hsts_include_subdomains
SECURE_HSTS_PRELOAD = _config.secure_hsts_preload
SESSION_COOKIE_SECURE = _config.secure_cookies
CSRF_COOKIE_SECURE = _config.secure_cookies
# One rule for forwarded headers (docs/security.md): only peers in FORWARDED_ALLOW_IPS are believed.
# The scheme is gunicorn's to decide (wsgi.url_scheme, from X-Forwarded-Proto when
# DJANGO_SECURE_PROXY_SSL_HEADER is true, see gunicorn.conf.py); Django reading the header itself
# would believe it from every peer.
SECURE_PROXY_SSL_HEADER = None
FORWARDED_ALLOW_IPS = _config.forwarded_allow_ips
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy for HTML pages (apps.core.security_headers), in the form of Django 6.0's
# SECURE_CSP. Everything from this origin only; no inline script or style, except django-rq's own
# (the queue dashboard): one inline script, three <style> blocks and two style attributes, each
# allowed by its hash (tests/test_security_headers.py recomputes them from the installed templates).
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'", "'sha256-1kZe1KRxelr3ptMPsod17Z6BDvbtm4WcufgsZGvsErM='"],
    "style-src": [
        "'self'",
        "'sha256-v5MY146GJAjl1QbCe2MklIw9r0xCNOWCEWSPd53tlgQ='",  # the dashboard's <style>
        "'sha256-KKjBAGERxCMkpnyRzzx30Ft5uJyWEE4TggCMJ9MJhMw='",  # its confirmation pages
        "'sha256-3HT4TFoCN6UZR/IBz5IGZ/l8VEv+BIOqCR558/XA3Jg='",  # a result's and a worker's page
    ],
    "style-src-attr": [
        "'unsafe-hashes'",
        "'sha256-k21rurKGtu5SGB1OFBbco10qy802mANKUYnLClIu1eQ='",  # margin-top: 20px;
        "'sha256-BSTKIYoPCaklkJ9YS/ZVYuKW8e+DG8jZJCXznBzHjgg='",  # display: inline-block;
    ],
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Browser features this service never uses, off for every page and anything it embeds.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
}
# Error pages and reports mask passwords inside URLs (REDIS_URL, CACHES, RQ_QUEUES), even with DEBUG on.
DEFAULT_EXCEPTION_REPORTER_FILTER = "apps.core.error_reports.SecretMaskingFilter"

HEALTHCHECK_TIMEOUT = _config.healthcheck_timeout
HEALTHCHECK_CACHE_SECONDS = _config.healthcheck_cache_seconds
HEALTHCHECK_TOKEN = _config.healthcheck_token
# The checks /readyz, /healthz and check_services run (docs/health.md): name -> the probe class
# (a dotted path), its options, and whether a failure makes the replica unready. Another
# database is probed by copying "db" under a new name with another DATABASES alias
# (docs/howto-add-a-health-check.md).
HEALTH_CHECKS = {
    "db": {"probe": "apps.health.probes.DatabaseProbe", "options": {"alias": "default"}, "critical": True},
    "redis": {"probe": "apps.health.probes.RedisProbe", "options": {"alias": "default"}, "critical": True},
}

# /metrics (apps.metrics, docs/metrics.md): served only to `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = _config.metrics_token

# Error reporting (docs/errors.md): sentry-sdk is imported and started only when SENTRY_DSN is set.
# The DSN stays out of the settings (Django's debug page lists them, and its name looks harmless).
if _config.sentry_dsn:
    from config import error_reporting

    error_reporting.start(_config)
    # Failed jobs: reported by the worker (apps.core.worker logs them without calling rq's own handler).
    RQ_EXCEPTION_HANDLERS = ["config.error_reporting.report_failed_job"]

# Our RequestIdMiddleware has already validated (or replaced) the header by the time
# django-structlog reads it, so trusting it is safe.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
# Its ip comes from X-Forwarded-For, X-Real-IP or Forwarded from any peer (django-ipware): ours
# (RequestIdMiddleware, apps.core.client_ip) believes X-Forwarded-For from FORWARDED_ALLOW_IPS only.
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = False
LOG_LEVEL = _config.log_level
LOG_FORMAT = _config.log_format
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
