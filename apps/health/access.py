"""Who may see health details: a Bearer ``HEALTHCHECK_TOKEN`` or a logged-in staff user."""

from __future__ import annotations

import hmac
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.db import DatabaseError
from django.http import HttpRequest


def has_valid_token(request: HttpRequest) -> bool:
    token: str | None = settings.HEALTHCHECK_TOKEN
    scheme, _, presented = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def is_staff_session(request: HttpRequest) -> bool:
    """Whether the session cookie belongs to an active staff user.

    Probes are answered before SessionMiddleware runs (see HealthProbeMiddleware), so the
    session is loaded here, and only when details were asked for.
    """
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return False
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(session_key)
    try:
        user = get_user(request)
    except DatabaseError:
        return False
    return bool(user.is_active and user.is_staff)


def may_see_details(request: HttpRequest, database_ok: bool) -> bool:
    # The session lives in the database: with the database failing, looking it up could
    # outlast the probe's deadline, so only the token opens details then.
    return has_valid_token(request) or (database_ok and is_staff_session(request))
