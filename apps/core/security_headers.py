"""Security headers on HTML pages: a Content-Security-Policy the admin works under, and a
Permissions-Policy that turns off the browser features this service never uses.

The policies are settings (``SECURE_CSP``, in the dict form of Django 6.0's setting of the same
name, and ``PERMISSIONS_POLICY``). A response that already carries a header keeps it. Django's own
debug pages (404 and 500 with DEBUG on) get no CSP: they are built from inline styles and scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def header_value(policy: Mapping[str, Sequence[str]], separator: str, joiner: str) -> str:
    return separator.join(f"{name}{joiner}{' '.join(values)}".strip() for name, values in policy.items())


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.csp = header_value(settings.SECURE_CSP, "; ", " ")
        self.permissions = ", ".join(
            f"{feature}=({' '.join(allowed)})" for feature, allowed in settings.PERMISSIONS_POLICY.items()
        )

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        if not (settings.DEBUG and response.status_code in (404, 500)):
            response.headers.setdefault("Content-Security-Policy", self.csp)
        response.headers.setdefault("Permissions-Policy", self.permissions)
        return response
