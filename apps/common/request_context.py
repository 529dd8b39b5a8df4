"""The request id of the last request this thread handled, for log lines written after it ended.

The log context is cleared when a request's middleware chain returns, but runserver writes its
request line (``django.server``) after that, on the same thread. runserver handles each
connection on a thread of its own, one request after another, so "the last request this thread
handled" is exactly the one that line is about. gunicorn's access line reads the response's
``X-Request-ID`` header instead and never needs this.
"""

from __future__ import annotations

import threading

_last = threading.local()


def remember(request_id: str) -> None:
    _last.request_id = request_id


def last_request_id() -> str | None:
    request_id: str | None = getattr(_last, "request_id", None)
    return request_id
