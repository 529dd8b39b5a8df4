"""What the web process measures as it works: requests and health checks (prometheus-client).

Every label has a bounded set of values, so the number of series stays small whatever clients
send: the route is the URL pattern that matched (never the raw path), the method one of the
standard ones or ``other``, the status its class (``2xx``), a check's name comes from
``HEALTH_CHECKS`` and its error from the fixed categories of ``apps.common.errors``.

Under gunicorn these values live in the replica's multiprocess files
(``apps.common.multiprocess_metrics``); in a single process (runserver, a command) in memory.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django.conf import settings
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from apps.common import errors

# One shape in both modes. In a single process a scrape reads prometheus-client's default registry
# (so a project's own metrics show up as under gunicorn, where every metric is in the files);
# its process, platform and GC collectors do not exist in multiprocess mode, and
# apps.metrics.processes reports every process of the replica instead. The `_created` series
# (a single process only) would double the output for nothing rate() needs.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    with contextlib.suppress(KeyError):
        REGISTRY.unregister(_collector)
disable_created_metrics()

UNMATCHED = "<unmatched>"  # no URL pattern matched (a 404, a request refused before routing)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route (URL pattern), method and status class.",
    ("route", "method", "status_class"),
)
REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the first middleware to the response, by route (URL pattern), method and status class.",
    ("route", "method", "status_class"),
)
CHECK_UP = Gauge(
    "health_check_up",
    "The check's last result: 1 ok, 0 failed (the most recent run among the live workers).",
    ("check",),
    multiprocess_mode="livemostrecent",
)
CHECK_DURATION = Histogram(
    "health_check_duration_seconds",
    "How long each run of the check took (a timeout counts as the whole deadline).",
    ("check",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CHECK_FAILURES = Counter(
    "health_check_failures",
    "Failed runs of the check, by error category.",
    ("check", "error"),
)

_requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_checks_seen: set[str] = set()


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request; the label children are looked up once per combination."""
    # Keyed on the labels, not the raw method: a client inventing methods must not grow the cache.
    method = method if method in METHODS else "other"
    key = (route, method, status // 100)
    children = _requests.get(key)
    if children is None:
        labels = (route, method, f"{status // 100}xx")
        children = _requests[key] = (REQUESTS.labels(*labels), REQUEST_DURATION.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


def record_checks(sender: object, report: Any, **kwargs: Any) -> None:
    """``checks_ran`` receiver: each check's status, latency and (on failure) error category."""
    if not settings.METRICS_TOKEN:
        return  # metrics off: nothing is recorded
    for name, result in report.checks.items():
        if name not in _checks_seen:
            # Every category starts at 0, so the first failure already shows in increase().
            for category in errors.CATEGORIES:
                CHECK_FAILURES.labels(name, category)
            _checks_seen.add(name)
        CHECK_UP.labels(name).set(1 if result.ok else 0)
        CHECK_DURATION.labels(name).observe(result.latency_ms / 1000)
        if not result.ok:
            error = result.error if result.error in errors.CATEGORIES else errors.UNKNOWN
            CHECK_FAILURES.labels(name, error).inc()
