"""Django settings, built from the validated environment (``config.env``) and nothing else.

Development and production differ only through environment variables: DEBUG switches the
defaults (log format, HTTPS hardening), every value can still be set explicitly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from apps.common.probe_paths import PROBE_PATHS, path_pattern
from config import env
from config.logging import build_logging_config

CONFIG = env.load_project_config()

BASE_DIR = env.BASE_DIR
DEBUG = CONFIG.debug
SECRET_KEY = CONFIG.secret_key
ALLOWED_HOSTS = CONFIG.allowed_hosts
CSRF_TRUSTED_ORIGINS = CONFIG.csrf_trusted_origins

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
    "apps.core",
    "apps.health",
]

MIDDLEWARE = [
    # Validates X-Request-ID and binds it to the log context before anything logs.
    "apps.core.middleware.RequestIdMiddleware",
    # Answers /livez, /readyz and /healthz before host validation and the HTTPS redirect:
    # orchestrators probe the pod IP over plain HTTP.
    "apps.health.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After AuthenticationMiddleware so request lines carry the user id.
    "django_structlog.middlewares.RequestMiddleware",
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


def _database_settings(parsed: dict[str, Any], pooler: str) -> dict[str, Any]:
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


DATABASES = {"default": _database_settings(CONFIG.database, CONFIG.database_pooler)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = CONFIG.redis_url
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

ADMIN_URL = CONFIG.admin_url

# HTTPS hardening: secure by default when DEBUG is false; each knob has its own variable.
SECURE_SSL_REDIRECT = CONFIG.secure_ssl_redirect
# A backstop only: HealthProbeMiddleware answers these paths before SecurityMiddleware runs.
SECURE_REDIRECT_EXEMPT = [path_pattern(path) for path in PROBE_PATHS]
SECURE_HSTS_SECONDS = CONFIG.secure_hsts_seconds
SECURE_HSTS_INCLUDE_SUBDOMAINS = CONFIG.secure_hsts_include_subdomains
SECURE_HSTS_PRELOAD = CONFIG.secure_hsts_preload
SESSION_COOKIE_SECURE = CONFIG.secure_cookies
CSRF_COOKIE_SECURE = CONFIG.secure_cookies
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if CONFIG.secure_proxy_ssl_header else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

HEALTHCHECK_TIMEOUT = CONFIG.healthcheck_timeout
HEALTHCHECK_CACHE_SECONDS = CONFIG.healthcheck_cache_seconds
HEALTHCHECK_TOKEN = CONFIG.healthcheck_token

# Our RequestIdMiddleware has already validated (or replaced) the header by the time
# django-structlog reads it, so trusting it is safe.
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True
LOG_LEVEL = CONFIG.log_level
LOG_FORMAT = CONFIG.log_format
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
