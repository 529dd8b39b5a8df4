"""The client's address for logs and for the login lockout: forwarded only through a trusted proxy."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

from apps.common.forwarded import Networks, client_address, trusted_networks


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> Networks:
    return trusted_networks(entries)


def client_ip(request: HttpRequest) -> str:
    """``REMOTE_ADDR``, or the client a proxy in ``FORWARDED_ALLOW_IPS`` forwarded for (``X-Forwarded-For``)."""
    return client_address(
        request.META.get("REMOTE_ADDR", ""),
        request.META.get("HTTP_X_FORWARDED_FOR", ""),
        _networks(tuple(settings.FORWARDED_ALLOW_IPS)),
    )
