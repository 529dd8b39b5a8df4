"""Failed and locked-out logins, one structured line each: the username tried, never a password.

The client's address and the request id are already in the log context (RequestIdMiddleware).
"""

from __future__ import annotations

from typing import Any

import structlog
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed

logger = structlog.get_logger("apps.core.login")

_USERNAME_LENGTH = 150  # Django's own limit: anything longer was not a username


def _username(credentials: dict[str, Any] | None, username: Any = None) -> str | None:
    value = username if username is not None else (credentials or {}).get("username")
    return str(value)[:_USERNAME_LENGTH] if value is not None else None


def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any) -> None:
    # Django has already replaced the password in `credentials`; only the username is logged.
    logger.warning("login_failed", username=_username(credentials))


def _locked_out(sender: Any, request: Any = None, username: Any = None, ip_address: Any = None, **_: Any) -> None:
    logger.warning("login_locked_out", username=_username(None, username))


def connect() -> None:
    user_login_failed.connect(_login_failed, dispatch_uid="core.login_failed")
    user_locked_out.connect(_locked_out, dispatch_uid="core.login_locked_out")
