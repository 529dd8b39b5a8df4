"""Error reporting to Sentry: started by the settings, and only when ``SENTRY_DSN`` is set.

sentry-sdk is imported inside ``start()`` and ``report_failed_job()`` only: without a DSN nothing
of it is loaded, and nothing is sent.

What is reported: unhandled exceptions of web requests (sentry-sdk's Django integration) and of
jobs that failed for good (``report_failed_job``, the worker's rq exception handler: our worker
logs a failure without calling rq's own handler, which sentry-sdk's rq integration wraps). Log
lines never become events: the logs already carry every failure, a health check failing is a
WARNING line by design, and a failed job would be reported twice.

Each event is tagged from the log context of the code that raised it: ``request_id`` (in a job,
the id of the request that enqueued it), ``job_id``, ``queue`` and ``worker_id`` in a worker; plus
the environment and release sentry-sdk files it under.

What never leaves the process: ``send_default_pii`` is off (no cookies, no user, no client address,
no ``Authorization``); sentry-sdk's ``EventScrubber`` blanks secret-named keys at any depth; and
``before_send`` masks the password of every URL in every string of the event and replaces every
configured secret (the secret key, the tokens, the database and Redis passwords) wherever it
appears. Events about the probes (their paths, the health loggers, the worker canary) are dropped:
the probes log their own failures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import structlog

from apps.common.masking import mask_urls_in
from apps.common.probe_paths import PROBE_PATHS, exact_paths
from config.env import VARIABLES, Config

# Log context that becomes an event's tags.
TAGGED_CONTEXT = ("request_id", "job_id", "queue", "worker_id")
FILTERED = "[Filtered]"
_PROBE_PATHS = exact_paths(PROBE_PATHS)
_HEALTH_CODE = "apps.health"
_SHORTEST_SECRET = 4  # shorter values would blank ordinary words of the event

_secrets: tuple[str, ...] = ()


def secret_values(config: Config) -> tuple[str, ...]:
    """The values of the configured secrets that must never appear in an event, longest first."""
    found: set[str] = set()
    for variable in VARIABLES:
        value = getattr(config, variable.attribute)
        if not variable.secret or not value:
            continue
        if isinstance(value, dict):
            found.add(str(value.get("PASSWORD") or ""))
        elif "://" in value:
            try:
                found.add(urlsplit(value).password or "")
            except ValueError:
                continue
        else:
            found.add(value)
    return tuple(sorted((value for value in found if len(value) >= _SHORTEST_SECRET), key=len, reverse=True))


def start(config: Config) -> None:
    """Start sentry-sdk for this process (each gunicorn worker, each rq worker, each command)."""
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.rq import RqIntegration
    from sentry_sdk.scrubber import EventScrubber

    global _secrets
    _secrets = secret_values(config)
    sentry_sdk.init(
        dsn=config.sentry_dsn,
        environment=config.sentry_environment,
        release=config.sentry_release,  # unset: sentry-sdk's own guess (a checkout's git commit)
        send_default_pii=False,
        event_scrubber=EventScrubber(recursive=True),
        before_send=before_send,  # type: ignore[arg-type] # sentry-sdk's Event is a TypedDict of a plain dict
        integrations=[
            DjangoIntegration(transaction_style="url"),
            RqIntegration(),
            # Log lines stay breadcrumbs; no line becomes an event (see the module docstring).
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
    )


def report_failed_job(job: Any, exc_type: type[BaseException], exc_value: BaseException, traceback: Any) -> bool:
    """rq exception handler (``RQ_EXCEPTION_HANDLERS``): report a job that failed for good.

    A job with retries left will run again: only its last failure is reported. Returns ``True``
    so the next handler runs.
    """
    import sentry_sdk

    if job.should_retry or str(getattr(job, "func_name", "")).startswith(_HEALTH_CODE):
        return True
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("job_id", job.id)
        scope.set_tag("queue", job.origin)
        request_id = job.meta.get("request_id")
        if request_id:
            scope.set_tag("request_id", request_id)
        sentry_sdk.capture_exception((exc_type, exc_value, traceback))
    return True


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop events about the probes; tag the rest from the log context; mask every secret."""
    context = structlog.contextvars.get_contextvars()
    if _about_probes(event, context):
        return None
    tags = event.setdefault("tags", {})
    for key in TAGGED_CONTEXT:
        if context.get(key) is not None:
            tags.setdefault(key, str(context[key]))
    job = (event.get("extra") or {}).get("rq-job")
    if isinstance(job, dict) and "description" in job:
        # rq's default description is the call with its arguments, which sentry-sdk filters
        # everywhere else while send_default_pii is off: the function's name says enough.
        job["description"] = job.get("func") or FILTERED
    cleaned: dict[str, Any] = _masked(event, _secrets)
    return cleaned


def _about_probes(event: dict[str, Any], context: dict[str, Any]) -> bool:
    url = (event.get("request") or {}).get("url") or ""
    try:
        path = urlsplit(url).path
    except ValueError:
        path = ""
    return (
        path in _PROBE_PATHS
        or str(event.get("logger") or "").startswith(_HEALTH_CODE)
        or str(context.get("job_func") or "").startswith(_HEALTH_CODE)
    )


def _masked(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (an event, after sentry-sdk serialised it) with URL passwords and ``secrets`` masked."""
    if isinstance(value, str):
        value = mask_urls_in(value)
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, dict):
        return {_masked(key, secrets): _masked(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item, secrets) for item in value]
    return value
