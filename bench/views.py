"""The bench-only "limit" probe: what a Django health check costs when it does nothing else.

One ``SELECT 1`` on this thread's persistent connection and one ``PING`` on django-redis's
pool, one after the other, in the request thread: no concurrency, no deadline, no single
flight, no logging, and not even Django's per-request connection health check (that would be
a second query). ``/healthz`` does the same I/O plus its machinery; the difference is the cost
of that machinery.
"""

from __future__ import annotations

from django.db import connections
from django.http import HttpRequest, HttpResponse
from django_redis import get_redis_connection

_OK = b'{"status": "ok", "db": "ok", "redis": "ok"}'


def limit(request: HttpRequest) -> HttpResponse:
    database = connections["default"]
    if database.connection is None:
        database.connect()
    with database.connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    get_redis_connection("default").ping()
    response = HttpResponse(_OK, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


def trivial(request: HttpRequest) -> HttpResponse:
    """Nothing but the full middleware chain (the metrics section measures what /metrics adds to it)."""
    return HttpResponse(b"ok", content_type="text/plain")
